"""The order API: place orders, read them and their saga's timeline."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
)

from services.events import OrderCreated
from services.ids import MAX_CUSTOMER_ID_CHARS, MAX_ORDER_ID_CHARS, MAX_SKU_CHARS, OrderIdPath
from services.order import store
from services.order.deadlines import Deadlines
from services.order.model import OrderLine, OrderStatus, order_total
from services.order.stuck import StuckCriteria, StuckFinder
from shared.app.http import BODY_RESPONSES, not_found
from shared.contracts.money import MAX_INTEGER_DIGITS, MoneyStr
from shared.contracts.text import StorableStr
from shared.observability.metrics import Metric, gauge
from shared.storage.db import UnitOfWorkFactory

__all__ = ["Age", "OrderPublic", "SagaCounts", "router"]

PRODUCER = "order"
SAGA_COUNTS_MAX_AGE_S = 15.0
"""Counting orders by status scans the table: done at most this often, whatever the scrapes."""


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: StorableStr = Field(min_length=1, max_length=MAX_SKU_CHARS)
    quantity: int = Field(ge=1, le=100_000)
    unit_price: MoneyStr


class OrderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_id: StorableStr = Field(min_length=1, max_length=MAX_CUSTOMER_ID_CHARS)
    items: list[ItemIn] = Field(min_length=1, max_length=100)

    @field_validator("items")
    @classmethod
    def _total_is_an_amount(cls, items: list[ItemIn]) -> list[ItemIn]:
        # Each line can be valid and their total still too large to be money (or to store).
        total = order_total(OrderLine(i.sku, i.quantity, i.unit_price) for i in items)
        if total >= Decimal(10) ** MAX_INTEGER_DIGITS:
            raise ValueError(
                f"the order's total {total} is too large: at most {MAX_INTEGER_DIGITS} digits "
                "before the point"
            )
        return items


class OrderPublic(BaseModel):
    order_id: str
    customer_id: str
    items: list[ItemIn]
    total: MoneyStr
    status: OrderStatus
    cancel_reason: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, order: store.Order) -> OrderPublic:
        return cls(
            order_id=order.order_id,
            customer_id=order.customer_id,
            items=[ItemIn.model_validate(item) for item in order.items],
            total=order.total,
            status=order.status,
            cancel_reason=order.cancel_reason.value if order.cancel_reason else None,
            created_at=order.created_at,
            updated_at=order.updated_at,
        )


def _seconds_as_duration(value: object) -> object:
    """A number of seconds (``"90"``, ``"1.5"``) as a timedelta; anything else is left to
    pydantic, which reads ISO 8601 durations (``PT5M``)."""
    if isinstance(value, str):
        try:
            return timedelta(seconds=float(value))
        except (ValueError, OverflowError):
            return value
    return value


MAX_AGE = timedelta(days=36_500)
"""A century: longer than any order has waited, and well inside PostgreSQL's intervals."""


def _positive(age: timedelta) -> timedelta:
    if age <= timedelta(0):
        raise ValueError("must be a positive duration")
    if age > MAX_AGE:
        raise ValueError(f"must be at most {MAX_AGE.days} days")
    return age


Age = Annotated[timedelta, BeforeValidator(_seconds_as_duration), AfterValidator(_positive)]
"""A duration given as seconds or in ISO 8601, longer than zero."""

IdempotencyKey = Annotated[StorableStr | None, Header(alias="Idempotency-Key", max_length=200)]


async def _stuck_criteria(finder: StuckFinder) -> StuckCriteria:
    try:
        return await finder.criteria()
    except Exception as error:  # Kafka unreachable or slow: say so rather than guess
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"cannot read the dead-letter topics to find stuck sagas: "
            f"{type(error).__name__}: {error}",
        ) from error


def router(units: UnitOfWorkFactory, finder: StuckFinder) -> APIRouter:
    api = APIRouter(prefix="/orders", tags=["orders"])

    @api.post(
        "",
        status_code=status.HTTP_202_ACCEPTED,
        responses={
            **BODY_RESPONSES,
            409: {"description": "Two requests with one Idempotency-Key crossed: retry"},
            503: {
                "description": "Overloaded, nothing done: retry after the Retry-After header's "
                "seconds, with the same Idempotency-Key"
            },
        },
    )
    async def place_order(body: OrderCreate, idempotency_key: IdempotencyKey = None) -> OrderPublic:
        """Accept an order and start its saga; the same Idempotency-Key returns the same order."""
        # Past its bounds (the 503 above) the request never got here: the service's
        # AdmissionGate (services/order/admission.py) refused it before its body was read.
        # The request's span (the shell's, continuing a traceparent header if one came) is
        # where the saga's trace begins: OrderCreated carries it, and every later event of
        # the order its trace id.
        lines = [OrderLine(item.sku, item.quantity, item.unit_price) for item in body.items]
        items = [item.model_dump(mode="json") for item in body.items]
        total = order_total(lines)
        created = OrderCreated.first(
            order_id=store.new_order_id(),
            producer=PRODUCER,
            customer_id=body.customer_id,
            items=items,
            total=total,
        )
        order = await store.place_order(units, created, idempotency_key)
        if order is not None:
            return OrderPublic.of(order)
        # The key was used before: answer with that order, start nothing.
        async with units() as uow:
            existing = await store.find_by_idempotency_key(uow.session, idempotency_key or "")
        if existing is None:  # pragma: no cover - the conflict proves it exists
            raise HTTPException(status.HTTP_409_CONFLICT, "idempotency key conflict, retry")
        return OrderPublic.of(existing)

    @api.get("/{order_id}", responses=not_found("order"))
    async def get_order(order_id: OrderIdPath) -> OrderPublic:
        """An order and where its saga stands."""
        async with units() as uow:
            order = await store.get_order(uow.session, order_id)
        if order is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no order {order_id!r}")
        return OrderPublic.of(order)

    @api.get("/{order_id}/timeline", responses=not_found("order"))
    async def get_timeline(order_id: OrderIdPath) -> list[dict[str, Any]]:
        """The saga's events in the order they happened."""
        async with units() as uow:
            if await store.get_order(uow.session, order_id) is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no order {order_id!r}")
            return await store.read_timeline(uow.session, order_id)

    @api.get(
        "",
        responses={503: {"description": "stuck=true, and the dead-letter topics cannot be read"}},
    )
    async def list_orders(
        request: Request,
        response: Response,
        status_: Annotated[OrderStatus | None, Query(alias="status")] = None,
        customer_id: Annotated[
            StorableStr | None,
            Query(
                min_length=1, max_length=MAX_CUSTOMER_ID_CHARS, description="only this customer's"
            ),
        ] = None,
        older_than: Annotated[
            Age | None,
            Query(
                description="only orders placed at least this long ago: seconds (`90`) or an "
                "ISO 8601 duration (`PT5M`, `P1DT2H`)"
            ),
        ] = None,
        stuck: Annotated[
            bool,
            Query(
                description="only the sagas that need a look: not terminal, and past the "
                "deadline of their status (SAGAKIT_DEADLINE_*_SECONDS, counted from when they "
                "entered it) or with an event in a dead-letter topic"
            ),
        ] = False,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        after: Annotated[
            StorableStr | None,
            Query(
                min_length=1,
                max_length=MAX_ORDER_ID_CHARS,
                description="the next page: the orders listed after this order id (the last "
                "of the previous page; the Link header rel=next gives the whole URL)",
            ),
        ] = None,
    ) -> list[OrderPublic]:
        """Recent orders, newest first; the filters narrow the list together."""
        query = store.OrderQuery(
            status=status_,
            customer_id=customer_id,
            older_than=older_than,
            stuck=await _stuck_criteria(finder) if stuck else None,
        )
        async with units() as uow:
            found = await store.find_orders(uow.session, query, limit=limit, after=after)
        response.headers["Cache-Control"] = "no-store"
        if len(found) == limit:
            following = request.url.include_query_params(after=found[-1].order_id)
            response.headers["Link"] = f'<{following}>; rel="next"'
        return [OrderPublic.of(order) for order in found]

    return api


class SagaCounts:
    """How many orders (sagas) stand at each status, how many are stuck and how many timed-out
    ones await a compensation, for ``/metrics`` (a component of the service that only
    reports: nothing to start or stop)."""

    def __init__(self, units: UnitOfWorkFactory, deadlines: Deadlines) -> None:
        self._units = units
        self._criteria = StuckCriteria(deadlines)
        self._counted_at = -SAGA_COUNTS_MAX_AGE_S
        self._counts = dict.fromkeys(OrderStatus, 0)
        self._stuck = 0
        self._awaiting_compensation = 0

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def metrics(self) -> list[Metric]:
        if time.monotonic() - self._counted_at >= SAGA_COUNTS_MAX_AGE_S:
            async with self._units() as uow:
                counted = await store.count_by_status(uow.session)
                # The dead letters as last indexed (the listing refreshes them, not a scrape).
                stuck = store.OrderQuery(stuck=self._criteria)
                self._stuck = await store.count_orders(uow.session, stuck)
                self._awaiting_compensation = await store.count_awaiting_compensation(uow.session)
            self._counts = dict.fromkeys(OrderStatus, 0) | counted
            self._counted_at = time.monotonic()
        return [
            gauge(
                "sagakit_orders",
                "Orders by the status of their saga",
                ("status",),
                {(status_.value,): count for status_, count in self._counts.items()},
            ),
            gauge(
                "sagakit_sagas_stuck",
                "Sagas GET /orders?stuck=true lists (a timed-out saga with a compensation "
                "outstanding past its deadline included)",
                (),
                {(): self._stuck},
            ),
            gauge(
                "sagakit_sagas_awaiting_compensation",
                "Timed-out sagas whose compensations are not all confirmed yet",
                (),
                {(): self._awaiting_compensation},
            ),
        ]
