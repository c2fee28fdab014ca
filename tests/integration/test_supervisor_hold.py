"""The supervisor holds an instance on request: stopped gracefully, not started again, not
counted as a restart, and started again once released (deploy/localstack/supervisor.py).

It supervises the notification service's webhook receiver, a real process that needs no
Kafka, database or Redis.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from deploy.localstack.ports import free_ports
from deploy.localstack.supervisor import hold, read_status, release

WAIT_S = 60.0


async def _until(what: str, condition: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not {what} within {WAIT_S} s")
        await asyncio.sleep(0.1)


async def _answers(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=1) as http:
            return (await http.get(f"{url}/readyz")).status_code == 200
    except httpx.TransportError:
        return False


async def _stopped(state_dir: Path) -> bool:
    return _entry(state_dir).get("pid") is None


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """(the supervisor's folder, the receiver's URL): one receiver named ``rcv``."""
    (port,) = free_ports(1)
    env_file = tmp_path / "stack.env"
    env_file.write_text("")
    argv = [sys.executable, "-m", "deploy.localstack.supervisor", str(tmp_path), str(env_file)]
    supervisor = subprocess.Popen(
        [*argv, f"rcv=notification.receiver:{port}"],
        stdin=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith("SAGAKIT_")},
    )
    try:
        yield tmp_path, f"http://127.0.0.1:{port}"
    finally:
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(60)


async def _ticks(state_dir: Path, count: int) -> None:
    """Return once the supervisor has written its status ``count`` more times (once a tick)."""
    status = state_dir / "services.json"
    seen = {status.stat().st_mtime_ns}
    deadline = time.monotonic() + WAIT_S
    while len(seen) <= count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the supervisor did not tick {count} times within {WAIT_S} s")
        await asyncio.sleep(0.05)
        seen.add(status.stat().st_mtime_ns)


def _entry(state_dir: Path) -> dict[str, object]:
    return next((e for e in read_status(state_dir) if e["name"] == "rcv"), {})


async def test_a_held_instance_stays_stopped_until_released_and_no_restart_is_counted(
    supervised: tuple[Path, str],
) -> None:
    state_dir, url = supervised
    await _until("ready", lambda: _answers(url))
    first_pid = _entry(state_dir)["pid"]

    hold(state_dir, "rcv")
    await _until("stopped", lambda: _stopped(state_dir))
    assert _entry(state_dir)["held"] is True
    assert not await _answers(url)
    # A stopped instance not held is started at the next tick: five ticks later it is not.
    await _ticks(state_dir, 5)
    assert (_entry(state_dir)["pid"], await _answers(url)) == (None, False)

    release(state_dir, "rcv")
    await _until("ready again", lambda: _answers(url))
    entry = _entry(state_dir)
    assert (entry["held"], entry["restarts"]) == (False, 0)
    assert entry["pid"] not in (None, first_pid)
