"""A webhook receiver for demos and tests: ``python -m services.notification.receiver``.

It is what a customer-facing channel would be behind ``SAGAKIT_NOTIFICATION_WEBHOOK_URL``,
reduced to what shows the notification service's promises: it takes each notification once,
by its ``Idempotency-Key``, answering a key it already took as a duplicate (200, not taken
again), and it can misbehave on purpose: refuse each notification's first ``fail_first``
posts (``fail_status``, 503 by default: tried again), refuse every post (``--always-fail``),
or take a notification's first post but answer only after ``slow_first`` seconds, later than
the deliverer waits (the answer is lost, the deliverer posts again, the copy is recognised).
Started with ``--fail-first``, ``--always-fail`` or ``--slow-first``, or told while it runs
(``PUT /behaviour``): the demo turns it bad and good again, around one order each.

``POST /hooks/notifications`` takes them; ``GET /received`` says what it took, the
duplicates it recognised and how many posts it refused, ``GET /received/{key}`` the same of
one notification. ``GET /readyz`` answers once it listens (the local stack waits for it). It
keeps everything in memory.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated, Any, NamedTuple

from fastapi import Body, FastAPI, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

__all__ = ["HOOK_PATH", "Answer", "Behaviour", "Receiver", "main", "receiver_app"]

HOOK_PATH = "/hooks/notifications"


class Answer(NamedTuple):
    status: int
    delay: float = 0.0
    """Seconds to wait before answering."""
    duplicate: bool = False


class Behaviour(BaseModel):
    """How the receiver answers the posts to come (``PUT /behaviour``)."""

    fail_first: int = Field(default=0, ge=0)
    fail_status: int = Field(default=503, ge=400, le=599)
    always_fail: bool = False
    slow_first: float = Field(default=0.0, ge=0)


@dataclass
class Receiver:
    """What the receiver took and how it answers; see the module docstring."""

    fail_first: int = 0
    fail_status: int = 503
    always_fail: bool = False
    slow_first: float = 0.0
    keys: list[str] = field(default_factory=list)
    """The Idempotency-Key of every post, in order."""
    taken: dict[str, dict[str, Any]] = field(default_factory=dict)
    duplicates: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)

    def answer(self, key: str, body: dict[str, Any]) -> Answer:
        """How to answer a post of ``key``."""
        self.keys.append(key)
        if key in self.taken:
            self.duplicates[key] += 1
            return Answer(200, duplicate=True)
        if self.always_fail or self.refused[key] < self.fail_first:
            self.refused[key] += 1
            return Answer(self.fail_status)
        self.taken[key] = body
        return Answer(200, delay=self.slow_first)

    def posts(self) -> dict[str, int]:
        """How many posts each key had."""
        return dict(Counter(self.keys))

    def behave(self, behaviour: Behaviour) -> None:
        """Answer the posts to come as ``behaviour`` says; what it took stays taken."""
        self.fail_first = behaviour.fail_first
        self.fail_status = behaviour.fail_status
        self.always_fail = behaviour.always_fail
        self.slow_first = behaviour.slow_first

    @property
    def behaviour(self) -> Behaviour:
        return Behaviour(
            fail_first=self.fail_first,
            fail_status=self.fail_status,
            always_fail=self.always_fail,
            slow_first=self.slow_first,
        )

    def of(self, key: str) -> dict[str, Any]:
        """What became of the posts of ``key``."""
        return {
            "taken": key in self.taken,
            "posts": self.keys.count(key),
            "refused": self.refused[key],
            "duplicates": self.duplicates[key],
        }


def receiver_app(receiver: Receiver) -> FastAPI:
    app = FastAPI(title="sagakit notification receiver (demo)")

    @app.post(HOOK_PATH)
    async def take(
        body: Annotated[dict[str, Any], Body()],
        idempotency_key: Annotated[str, Header(min_length=1)],
    ) -> JSONResponse:
        """A notification: taken once per Idempotency-Key."""
        answer = receiver.answer(idempotency_key, body)
        if answer.delay:
            await asyncio.sleep(answer.delay)
        return JSONResponse({"duplicate": answer.duplicate}, status_code=answer.status)

    @app.get("/received")
    async def received() -> dict[str, Any]:
        """What it took, the copies it recognised, the posts it refused."""
        return {
            "taken": list(receiver.taken.values()),
            "duplicates": dict(receiver.duplicates),
            "refused": sum(receiver.refused.values()),
        }

    @app.get("/received/{key}")
    async def received_of(key: str) -> dict[str, Any]:
        """One notification's posts: taken or not, how many, refused, recognised as copies."""
        return receiver.of(key)

    @app.put("/behaviour")
    async def behave(behaviour: Behaviour) -> Behaviour:
        """Answer the posts to come as told (fields left out go back to their defaults)."""
        receiver.behave(behaviour)
        return receiver.behaviour

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        """It listens: all it needs."""
        return {"status": "ready"}

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn  # only to serve it from the command line

    parser = argparse.ArgumentParser(prog="python -m services.notification.receiver")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--fail-first", type=int, default=0, metavar="N")
    parser.add_argument("--fail-status", type=int, default=503)
    parser.add_argument("--always-fail", action="store_true")
    parser.add_argument("--slow-first", type=float, default=0.0, metavar="SECONDS")
    options = parser.parse_args(argv)
    receiver = Receiver(
        fail_first=options.fail_first,
        fail_status=options.fail_status,
        always_fail=options.always_fail,
        slow_first=options.slow_first,
    )
    uvicorn.run(receiver_app(receiver), host=options.host, port=options.port)


if __name__ == "__main__":
    main()
