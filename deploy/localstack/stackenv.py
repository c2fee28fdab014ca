"""``<state>/stack.env``: the endpoints of a running stack, as shell-sourceable KEY=value lines."""

from __future__ import annotations

import secrets
import shlex
from collections.abc import Mapping
from pathlib import Path

__all__ = ["admin_token", "read_stack_env", "write_stack_env"]


def admin_token(state_dir: Path) -> str:
    """The admin token of this state dir: generated once, then kept across ups and downs."""
    path = state_dir / "admin-token"
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def write_stack_env(path: Path, values: Mapping[str, str]) -> None:
    """Write KEY=value lines; values are shell-quoted only when they need it."""
    lines = [f"{key}={shlex.quote(value)}" for key, value in sorted(values.items())]
    header = "# Written by `python -m deploy.localstack up`; rewritten on every up.\n"
    path.write_text(header + "\n".join(lines) + "\n")
    path.chmod(0o600)  # it holds the admin token and database passwords


def read_stack_env(path: Path) -> dict[str, str]:
    """The KEY=value lines of a stack.env (``write_stack_env``'s or one written by hand)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            words = shlex.split(value)  # undoes write_stack_env's quoting
            values[key.strip()] = words[0] if words else ""
    return values
