"""Running commands and background processes, and stopping them again."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from deploy.localstack.errors import StackError

__all__ = [
    "is_alive",
    "run",
    "running_pid",
    "spawn_detached",
    "start_server",
    "tail",
    "terminate",
]


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    what: str = "",
    timeout: float = 600.0,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; on failure raise a StackError that shows its output.

    The timeout is generous (apt-get and Maven download): it only turns a hang into an error.
    """
    try:
        done = subprocess.run(
            list(argv),
            env=None if env is None else {**os.environ, **env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            # Tools such as psql run as user postgres: the caller's cwd may be unreadable to it.
            cwd="/",
            check=False,
            timeout=timeout,
        )
    except FileNotFoundError as error:
        raise StackError(f"{what or argv[0]}: {argv[0]} not found") from error
    except subprocess.TimeoutExpired as error:
        raise StackError(
            f"{what or argv[0]} still ran after {timeout:.0f} s: {' '.join(argv)}"
        ) from error
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()
        raise StackError(
            f"{what or argv[0]} failed (exit {done.returncode}): {' '.join(argv)}\n{output}"
        )
    return done


def start_server(argv: Sequence[str], folder: Path, name: str) -> int:
    """Start a server in the background: output to ``folder/name.log``, pid in ``name.pid``."""
    folder.mkdir(parents=True, exist_ok=True)
    pid = spawn_detached(argv, folder / f"{name}.log")
    (folder / f"{name}.pid").write_text(f"{pid}\n")
    return pid


def spawn_detached(argv: Sequence[str], log: Path) -> int:
    """Start a long-running process in its own session, output to ``log``; return its pid.

    posix_spawn rather than subprocess.Popen: no Popen object is left behind to warn
    "subprocess is still running" (warnings are errors in the test suite, which starts the
    stack in-process), and the new session keeps Ctrl-C in the terminal away from it.
    """
    # Truncated at each start: the log holds this run only, and never grows without bound.
    write_log = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    return os.posix_spawn(
        argv[0],
        list(argv),
        dict(os.environ),
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(log), write_log, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
        setsid=True,
        # Python ignores SIGPIPE; give the child the default back, as subprocess does.
        setsigdef=(signal.SIGPIPE,),
    )


def is_alive(pid: int) -> bool:
    """Whether the process exists; reaps it first if it is our own child that exited."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass  # not our child: only the kill probe below can tell
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_pid(pidfile: Path, marker: str) -> int | None:
    """The pid in ``pidfile`` if that process runs and its command line contains ``marker``.

    The marker guards against a stale pidfile whose pid now belongs to someone else.
    """
    try:
        pid = int(pidfile.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, ValueError, IndexError):
        return None
    return pid if marker in cmdline and is_alive(pid) else None


def terminate(pid: int, what: str, timeout: float = 60.0) -> None:
    """SIGTERM and wait for the exit; SIGKILL when it takes longer than ``timeout``."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while is_alive(pid):
        if time.monotonic() > deadline:
            print(f"{what} (pid {pid}) ignored SIGTERM for {timeout:.0f} s: sending SIGKILL")
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10.0
        time.sleep(0.1)


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} is unreadable)"
