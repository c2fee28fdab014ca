"""The services' HTTP server, run as ``shared.app.serve`` runs it (a real uvicorn on the
loopback; the app is a stub that answers 204)."""

from __future__ import annotations

import asyncio
import select
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

from shared.app.serve import UVICORN_OPTIONS

BURST = 100
"""New connections that arrive at once, as after a deploy or from a load tool."""


async def _no_content(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[Any]],
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def test_a_burst_of_new_connections_is_taken_in_a_few_turns_of_a_busy_loop() -> None:
    # A loop busy with other work (consumers, the relay, requests in flight) turns slowly.
    # If it took one new connection per turn, the last of a burst would wait a hundred
    # turns before its request was even read, while the service answered others (libuv,
    # under uvloop, accepts one connection per turn: requests waited about 1 s behind a
    # burst of 200 at 600 orders/s). Counted in turns, not seconds: no clock to race.
    server = uvicorn.Server(
        uvicorn.Config(_no_content, host="127.0.0.1", port=0, **UVICORN_OPTIONS)
    )
    turns_to_answer: list[int] = []

    async def main() -> None:
        serving = asyncio.create_task(server.serve())
        for _ in range(3000):  # up to 30 s
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert server.started, "the server did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        # Connected (the kernel completes the handshakes) and sent while the loop cannot
        # turn: the whole burst waits for the server at once.
        clients = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(BURST)]
        for client in clients:
            client.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        answers: list[bytes] = []
        waiting = set(clients)
        turns = 0
        while waiting and turns < 100 * BURST:
            turns += 1
            await asyncio.sleep(0)  # one turn of the server's loop
            readable, _, _ = select.select(list(waiting), [], [], 0)
            for client in readable:
                answers.append(client.recv(1024).split(b"\r\n", 1)[0])
                waiting.discard(client)
        turns_to_answer.append(turns)
        for client in clients:
            client.close()
        server.should_exit = True
        await serving
        assert answers == [b"HTTP/1.1 204 No Content"] * BURST

    runner = asyncio.Runner(loop_factory=server.config.get_loop_factory())
    with runner:
        runner.run(main())
    assert turns_to_answer[0] < BURST / 4, turns_to_answer
