"""Calling a service's handler in a test the way the consumer runner would."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from shared.contracts.errors import TransientError
from shared.storage.db import UnitOfWork, UnitOfWorkFactory

__all__ = ["handle_as_the_runner_does"]


async def handle_as_the_runner_does(
    units: UnitOfWorkFactory, handle: Callable[[UnitOfWork], Awaitable[None]]
) -> None:
    """``handle`` in a unit of work of its own, committed; a handler that lost a race to a
    concurrent copy of its event raises TransientError, and is tried again at once."""
    for _ in range(3):
        try:
            async with units() as uow:
                await handle(uow)
                await uow.commit()
            return
        except TransientError:
            continue
    raise AssertionError("still losing a race after three attempts")
