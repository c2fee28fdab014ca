"""Running ``sagakit`` in tests: in-process through typer's CliRunner, or as the console script.

Every run gets its settings from one env file written for the test (``--env-file``), and
none from the shell: ``SAGAKIT_*`` variables of the environment (a sourced stack.env) would
win over the file and send the command to another stack.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from shared.ops.cli.app import app

__all__ = ["CONSOLE_SCRIPT", "Ran", "Sagakit"]

CONSOLE_SCRIPT = Path(sys.executable).with_name("sagakit")
"""The script pip installed from pyproject.toml's [project.scripts]."""


@dataclass(frozen=True)
class Ran:
    """What one run printed, and how it ended."""

    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def json_lines(self) -> list[Any]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    @property
    def error_lines(self) -> list[str]:
        return self.stderr.splitlines()


def _shell_settings() -> list[str]:
    return [k for k in os.environ if k.startswith("SAGAKIT_") and not k.startswith("SAGAKIT_TEST_")]


class Sagakit:
    """``await sagakit("topics", "list")``: the command line, with these settings only."""

    def __init__(self, settings: Mapping[str, str], env_file: Path) -> None:
        env_file.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        self.env_file = env_file

    def _argv(self, args: tuple[str, ...]) -> list[str]:
        return ["--env-file", str(self.env_file), *args]

    async def __call__(self, *args: str, input: str | None = None) -> Ran:
        """In this process (CliRunner, in a thread: the CLI runs its own event loop)."""
        cleared: dict[str, str | None] = dict.fromkeys(_shell_settings())
        result = await asyncio.to_thread(
            CliRunner().invoke, app, self._argv(args), input=input, env=cleared
        )
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception  # a bug: the CLI must turn every failure into a line
        return Ran(result.exit_code, result.stdout, result.stderr)

    async def script(self, *args: str, timeout: float = 60) -> Ran:
        """As a person runs it: the installed console script, in a process of its own."""
        env = {k: v for k, v in os.environ.items() if k not in _shell_settings()}
        done = await asyncio.to_thread(
            subprocess.run,
            [str(CONSOLE_SCRIPT), *self._argv(args)],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
        return Ran(done.returncode, done.stdout, done.stderr)

    async def started(self, *args: str) -> asyncio.subprocess.Process:
        """The console script started and left running, its output unbuffered on a pipe: a
        test reads its lines as they come (``--follow``) instead of guessing when they do."""
        env = {k: v for k, v in os.environ.items() if k not in _shell_settings()}
        return await asyncio.create_subprocess_exec(
            str(CONSOLE_SCRIPT),
            *self._argv(args),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env | {"PYTHONUNBUFFERED": "1"},
        )
