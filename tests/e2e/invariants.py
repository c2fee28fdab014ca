"""The invariants (docs/contract.md, section 7), checked over what one test set up, over HTTP.

A test opens its own accounts and stocks its own skus through a ``Ledger``, which remembers
what was put in and every order placed; ``await ledger.assert_invariants()`` then waits until
every order is terminal (nothing lost) and nothing is reserved any more (inventory settles a
moment after the order's status), and runs the product's own checks (``deploy.chaos.checks``,
the ones ``make chaos`` verifies) over the API's answers, for those customers, skus and
orders only: money conserved, stock conserved, statuses that agree (a ``COMPLETED`` order
``CHARGED`` for its total and ``SHIPPED`` with a tracking id, a cancelled one's payment and
shipment what its reason implies). The equalities are exact, so a second charge, refund,
reservation, release or shipment breaks one of them.

The polling helpers tolerate a service that is restarting (connection refused) and fail with
what they last saw when their deadline passes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from deploy.chaos.checks import check
from deploy.chaos.manifest import Manifest
from deploy.chaos.snapshot import order_row, read_http
from deploy.demo.client import TERMINAL, SagaClient
from deploy.localstack.declared import service_names
from deploy.localstack.supervisor import read_status
from shared.contracts.topics import existing_partitions

__all__ = [
    "Ledger",
    "ServiceInstance",
    "bounded_gather",
    "caught_up",
    "dead_letters",
    "eventually",
    "instances",
    "settled_stock",
    "settled_timeline",
    "stays",
    "unique",
    "wait_terminal",
]

T = TypeVar("T")
Json = dict[str, Any]
Items = list[tuple[str, int, str]]

POLL_INTERVAL_S = 0.1
WAIT_S = 60.0
"""How long a test waits for what must happen: generous, since a poll returns as soon as it
has (CI machines are loaded; a cap is only reached when something is wrong)."""
# The checks of a test's books; "services ready" is left out: a test may end while an
# instance it crashed on purpose is still starting.
BOOK_CHECKS = frozenset(
    {"sagas terminal", "money conserved", "stock conserved", "no double effect", "statuses agree"}
)
SAGA_END = ("OrderCompleted", "OrderCancelled")


@dataclass(frozen=True)
class ServiceInstance:
    """One running service process: its supervisor name (logs, restarts), service and URL."""

    name: str
    service: str
    url: str


def instances(state_dir: Path, service: str | None = None) -> list[ServiceInstance]:
    """The instances the session's supervisor runs (of ``service`` only, if given).

    Read from the supervisor's status rather than imported from conftest: pytest imports
    conftest under its own module name, so a second import would pick other free ports. The
    companions it runs beside them (the notification receiver) are no service's instances.
    """
    every = [
        ServiceInstance(str(i["name"]), str(i["module"]), f"http://127.0.0.1:{i['port']}")
        for i in read_status(state_dir)
        if i["module"] in service_names()
    ]
    return [i for i in every if service is None or i.service == service]


def unique(label: str) -> str:
    """A customer id or sku no other test of the session uses."""
    return f"{label}-{uuid.uuid4().hex[:10]}"


async def eventually(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    timeout: float = WAIT_S,
    what: str,
) -> T:
    """``probe()`` once ``done`` holds for it; an AssertionError with the last value after
    ``timeout`` seconds. A service that does not answer (restarting) is asked again."""
    deadline = time.monotonic() + timeout
    last: object = "no answer"
    while True:
        try:
            value = await probe()
        except httpx.TransportError as error:
            last = f"no answer ({type(error).__name__})"
        else:
            if done(value):
                return value
            last = value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s; last seen: {last}")
        await asyncio.sleep(POLL_INTERVAL_S)


async def stays(
    probe: Callable[[], Awaitable[T]], holds: Callable[[T], bool], *, seconds: float, what: str
) -> T:
    """``probe()`` after ``holds`` was true of every answer for ``seconds`` seconds: the one
    place where waiting is the assertion (something must *not* happen)."""
    deadline = time.monotonic() + seconds
    while True:
        value = await probe()
        assert holds(value), (
            f"{what}: no longer true after {seconds - (deadline - time.monotonic()):.1f} s: {value}"
        )
        if time.monotonic() > deadline:
            return value
        await asyncio.sleep(POLL_INTERVAL_S)


async def caught_up(bootstrap: str, group: str, topic: str, *, timeout: float = WAIT_S) -> None:
    """Wait until consumer group ``group`` has committed every record of ``topic`` written so
    far: what it did with them (an effect, or nothing) is in its database by then, since a
    consumer commits its offsets after its transaction. A "nothing happened" check after a
    replay starts here, so it knows its input was consumed."""
    options = {"bootstrap_servers": bootstrap}
    partitions = (await existing_partitions(options))[topic]
    reader = AIOKafkaConsumer(**options)
    admin = AIOKafkaAdminClient(**options)
    await reader.start()
    await admin.start()
    try:
        ends = await reader.end_offsets(partitions)

        async def committed() -> dict[Any, int]:
            offsets = await admin.list_consumer_group_offsets(group, partitions=partitions)
            return {tp: meta.offset for tp, meta in offsets.items()}

        await eventually(
            committed,
            lambda now: all(now.get(tp, -1) >= end for tp, end in ends.items() if end),
            timeout=timeout,
            what=f"group {group} caught up with {topic}",
        )
    finally:
        await admin.close()
        await reader.stop()


async def wait_terminal(client: SagaClient, order_id: str, timeout: float = WAIT_S) -> Json:
    """The order once it is ``COMPLETED`` or ``CANCELLED``."""
    return await eventually(
        lambda: client.order(order_id),
        lambda order: order["status"] in TERMINAL,
        timeout=timeout,
        what=f"order {order_id} terminal",
    )


async def settled_stock(client: SagaClient, sku: str, timeout: float = WAIT_S) -> Json:
    """The sku's stock once nothing is reserved (no reservation in flight)."""
    return await eventually(
        lambda: client.stock(sku),
        lambda stock: stock["reserved"] == 0,
        timeout=timeout,
        what=f"stock of {sku} with nothing reserved",
    )


async def settled_timeline(
    client: SagaClient, order_id: str, timeout: float = WAIT_S
) -> list[Json]:
    """The order's timeline once it holds the saga's last event (the read model trails the
    order's status: it is another consumer group)."""
    return await eventually(
        lambda: client.timeline(order_id),
        lambda events: any(event["event_type"] in SAGA_END for event in events),
        timeout=timeout,
        what=f"timeline of {order_id} ending the saga",
    )


async def bounded_gather(calls: Iterable[Awaitable[T]], limit: int) -> list[T]:
    """Await ``calls`` with at most ``limit`` of them running at a time; results in order."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Awaitable[T]) -> T:
        async with gate:
            return await call

    return await asyncio.gather(*(one(call) for call in calls))


async def dead_letters(
    bootstrap: str, dlq_topic: str, order_id: str, *, timeout: float = WAIT_S
) -> list[Any]:
    """The dead letters of ``order_id`` in ``dlq_topic`` (keyed by order id, as every record),
    read from the beginning without a consumer group; waits until there is at least one, or
    returns none after ``timeout`` seconds."""
    consumer = AIOKafkaConsumer(
        dlq_topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        while not found and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                found += [record for record in records if record.key == order_id.encode()]
    finally:
        await consumer.stop()
    return found


def _money(text: str) -> Decimal:
    return Decimal(text)


@dataclass
class Ledger:
    """What a test put into the system, and the orders it placed: the invariants' inputs."""

    client: SagaClient
    balances: dict[str, Decimal | None] = field(default_factory=dict)
    """Starting balance of each customer; None for one without an account."""
    stocked: dict[str, int | None] = field(default_factory=dict)
    """Units put in of each sku; None for a sku never stocked."""
    orders: dict[str, Json] = field(default_factory=dict)
    """Each order placed, as the API accepted it."""

    async def customer(self, label: str, balance: str | None) -> str:
        """A new customer with ``balance`` (None: no account at all)."""
        customer_id = unique(label)
        if balance is not None:
            await self.client.set_balance(customer_id, balance)
        self.balances[customer_id] = None if balance is None else _money(balance)
        return customer_id

    async def sku(self, label: str, units: int | None) -> str:
        """A new sku with ``units`` available (None: never stocked, unknown to inventory)."""
        sku = unique(label)
        if units is not None:
            await self.client.set_stock(sku, units)
        self.stocked[sku] = units
        return sku

    async def place(
        self, customer_id: str, items: Items, *, idempotency_key: str | None = None
    ) -> Json:
        """Place an order and remember it; with an Idempotency-Key, as a careful client does,
        so a request whose answer is lost (a reset connection) is sent again safely."""
        key = idempotency_key or str(uuid.uuid4())
        order = await self.client.place_order(customer_id, items, key)
        self.orders[order["order_id"]] = order
        return order

    async def settle(self, timeout: float = 60.0, concurrency: int = 20) -> dict[str, Json]:
        """Every order once terminal (nothing lost); fails naming the orders still open."""
        deadline = time.monotonic() + timeout
        final: dict[str, Json] = {}
        while True:
            waiting = [order_id for order_id in self.orders if order_id not in final]
            answers = await bounded_gather(
                (self._read_order(order_id) for order_id in waiting), concurrency
            )
            final |= {
                o["order_id"]: o for o in answers if o is not None and o["status"] in TERMINAL
            }
            if len(final) == len(self.orders):
                return final
            if time.monotonic() > deadline:
                open_orders = {o["order_id"]: o["status"] for o in answers if o is not None}
                raise AssertionError(
                    f"{len(self.orders) - len(final)} of {len(self.orders)} orders not terminal "
                    f"within {timeout:.0f} s: {dict(list(open_orders.items())[:10])}"
                )
            await asyncio.sleep(0.25)

    async def _read_order(self, order_id: str) -> Json | None:
        try:
            return await self.client.order(order_id)
        except httpx.TransportError:
            return None  # the order service is restarting: ask again next round

    async def assert_invariants(
        self, timeout: float = 60.0, concurrency: int = 20
    ) -> dict[str, Json]:
        """Wait for every order to end, check the invariants, return the final orders."""
        final = await self.settle(timeout, concurrency)
        problems = await self.violations(final, timeout, concurrency)
        assert problems == [], "\n".join(problems)
        return final

    async def violations(
        self, final: Mapping[str, Json], timeout: float = 60.0, concurrency: int = 20
    ) -> list[str]:
        """Every way the final state breaks the invariants (empty: none): the product's
        own checks (``deploy.chaos.checks``, what ``make chaos`` verifies), over the API."""
        stocked = [sku for sku, units in self.stocked.items() if units is not None]
        settled = await bounded_gather(
            (self._settled(sku, timeout) for sku in stocked), concurrency
        )
        manifest = Manifest(dict(self.balances), dict(self.stocked), list(self.orders))
        orders = {order_id: order_row(order) for order_id, order in final.items()}
        snapshot = await read_http(self.client, manifest, orders)
        results = [r for r in check(manifest, snapshot) if r.name in BOOK_CHECKS]
        return [problem for problems in settled for problem in problems] + [
            problem for result in results for problem in result.violations
        ]

    async def _settled(self, sku: str, timeout: float) -> list[str]:
        """Nothing of ``sku`` reserved (no reservation in flight), or why not."""
        try:
            await settled_stock(self.client, sku, timeout)
        except AssertionError as error:
            return [str(error)]
        return []
