"""``<state>/stack.env``: the endpoints of a running stack, as shell-sourceable KEY=value lines."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path

from shared.envfile import read_env_file, write_env_file

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
    """Write KEY=value lines (``shared.envfile``), readable only by their owner."""
    header = "# Written by `python -m deploy.localstack up`; rewritten on every up."
    write_env_file(path, values, header)
    path.chmod(0o600)  # it holds the admin token and database passwords


def read_stack_env(path: Path) -> dict[str, str]:
    """The KEY=value lines of a stack.env (``write_stack_env``'s or one written by hand)."""
    return read_env_file(path)
