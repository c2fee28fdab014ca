"""Which TCP ports are free, and who holds the ones that are not."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable

from deploy.localstack.errors import StackError
from deploy.localstack.profiles import HOST

__all__ = [
    "free_ports",
    "free_ports_between",
    "is_free",
    "listening",
    "owner",
    "wait_until_closed",
    "wait_until_free",
]


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports nobody listens on now (the kernel picks them), for processes
    that run beside a stack whose fixed ports they must not take."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_ports_between(first: int, last: int, count: int) -> list[int]:
    """The lowest ``count`` ports of ``first..last`` nobody listens on now, for servers that
    must stay in a range of their own (and whose ports must be known before they start)."""
    found = [port for port in range(first, last + 1) if is_free(port)][:count]
    if len(found) < count:
        raise StackError(f"fewer than {count} free ports between {first} and {last}")
    return found


def is_free(port: int) -> bool:
    """Whether a server could listen on ``HOST:port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Without SO_REUSEADDR, connections in TIME_WAIT right after a stop look like a listener.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def owner(port: int) -> str | None:
    """``name (pid N)`` of the process listening on ``port``, when ``ss`` can tell."""
    if shutil.which("ss") is None:
        return None
    listing = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=False
    ).stdout
    found = re.search(r'users:\(\("([^"]+)",pid=(\d+)', listing)
    return f"{found[1]} (pid {found[2]})" if found else None


def wait_until_free(ports: Iterable[int], what: str, timeout: float = 30.0) -> None:
    """Return once nothing listens on any of ``ports``; a stopped server leaves none behind."""
    deadline = time.monotonic() + timeout
    for port in ports:
        while not is_free(port):
            if time.monotonic() > deadline:
                raise StackError(f"{what} stopped but port {port} is still taken by {owner(port)}")
            time.sleep(0.1)


def listening(port: int) -> bool:
    """Whether a server accepts connections on ``HOST:port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex((HOST, port)) == 0


def wait_until_closed(ports: Iterable[int], what: str, timeout: float = 30.0) -> None:
    """Return once no server listens on any of ``ports``.

    Unlike :func:`wait_until_free`, a port that some client socket holds as its own local
    port does not count: ports above 32768 are the kernel's ephemeral range, which hands
    them to outgoing connections while our server is away.
    """
    deadline = time.monotonic() + timeout
    for port in ports:
        while listening(port):
            if time.monotonic() > deadline:
                raise StackError(f"{what} stopped but {owner(port)} still listens on {port}")
            time.sleep(0.1)
