"""Keep-alive connections handed out one request at a time, without httpx's own pool.

httpx's pool (httpcore 1.0) re-examines every connection, and every queued request, each
time a request starts or ends, and part of that work grows with the square of the
connections: with a few hundred connections the load generator burns a core on
book-keeping alone. Here each connection is its own one-connection client, made when first
needed, and the idle ones wait in a last-in first-out queue, so handing one out costs the
same at any size and the connections in use stay as few as the load allows.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache

import httpx

__all__ = ["KeepAliveClients", "one_connection_client"]


@cache
def _tls() -> ssl.SSLContext:
    # One for every client: httpx builds one per client otherwise, loading the CA bundle
    # each time (some 30 ms of CPU apiece, seconds for a few hundred clients).
    return ssl.create_default_context()


def one_connection_client(timeout: float) -> httpx.AsyncClient:
    """An httpx client that keeps one connection alive and never opens a second."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    return httpx.AsyncClient(limits=limits, timeout=timeout, verify=_tls())


class KeepAliveClients:
    """Up to ``size`` keep-alive connections; ``client()`` lends one for one request."""

    def __init__(self, size: int, timeout: float) -> None:
        self._size = size
        self._timeout = timeout
        self._all: list[httpx.AsyncClient] = []
        self._idle: asyncio.LifoQueue[httpx.AsyncClient] = asyncio.LifoQueue()

    @asynccontextmanager
    async def client(self) -> AsyncIterator[httpx.AsyncClient]:
        """A client of its own until the block ends; waits while all ``size`` are lent out."""
        if self._idle.empty() and len(self._all) < self._size:
            client = one_connection_client(self._timeout)
            self._all.append(client)
        else:
            client = await self._idle.get()
        try:
            yield client
        finally:
            self._idle.put_nowait(client)

    async def aclose(self) -> None:
        for client in self._all:
            await client.aclose()
