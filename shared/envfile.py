"""``KEY=value`` files (``.stack/stack.env`` and the like): the one reader, and its writer.

The files are read by python-dotenv (what pydantic-settings uses for ``env_file``) and must
also be shell-sourceable (``set -a; . .stack/stack.env``), so a value is written bare when it
is shell-safe, otherwise in single quotes, which both read literally.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values

__all__ = ["read_env_file", "write_env_file"]


def read_env_file(path: Path | str) -> dict[str, str]:
    """The ``KEY=value`` pairs of ``path`` (comments and blank lines skipped, quotes undone)."""
    return {key: value or "" for key, value in dotenv_values(path, interpolate=False).items()}


def write_env_file(path: Path, values: Mapping[str, str], header: str = "") -> None:
    """Write ``values`` sorted by key, readable by ``read_env_file`` and by a shell.

    Refuses a value with a single quote or a backslash: no quoting reads the same in both.
    """
    lines = [header.rstrip("\n")] if header else []
    lines += [f"{key}={_quoted(key, value)}" for key, value in sorted(values.items())]
    path.write_text("\n".join(lines) + "\n")


def _quoted(key: str, value: str) -> str:
    if shlex.quote(value) == value:
        return value
    if "'" in value or "\\" in value or "\n" in value:
        raise ValueError(f"{key}: a value with ', \\ or a newline cannot be written to an env file")
    return f"'{value}'"
