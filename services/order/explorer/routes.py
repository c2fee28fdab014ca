"""The saga explorer's pages: server-rendered HTML, refreshed in place by a small script.

Reading needs no login; the writes (replaying a dead letter, replaying a group of them
through ``/bulk/replay``) are admin routes, behind the admin token like every admin endpoint
(the page asks for the token and keeps it in the tab's sessionStorage). Every asset is
served from here: the page loads nothing from elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from services.ids import MAX_ORDER_ID_CHARS
from services.order import bulk, store
from services.order.api import Age
from services.order.explorer import topic_pages
from services.order.explorer.lanes import swimlanes
from services.order.explorer.peers import Peers
from services.order.model import OrderStatus
from services.order.stuck import StuckCriteria, StuckFinder, Why
from shared.app.admin import audited
from shared.app.http import BODY_RESPONSES
from shared.contracts.text import StorableStr
from shared.ops.dead_letter_index import READ_TIMEOUT_S, DeadLetterIndex
from shared.ops.group_lag import read_groups
from shared.ops.replay import forgotten_reason, replay_dead_letters
from shared.publishing.audit import AuditEntry, AuditTrail
from shared.storage.db import UnitOfWorkFactory

__all__ = ["Explorer", "admin_router", "router"]

HERE = Path(__file__).parent
STATIC_FILES = {"explorer.js": "text/javascript", "explorer.css": "text/css"}
REFRESH_SECONDS = 3
LISTED = 50
REPLAY_TIMEOUT_S = 30.0
AUDIT_SHOWN = 200

_AGE: TypeAdapter[timedelta] = TypeAdapter(Age)


@dataclass(frozen=True)
class Explorer:
    """What the pages read from: the orders, the stuck criteria, the dead letters, the other
    services and the consumer groups."""

    units: UnitOfWorkFactory
    finder: StuckFinder
    dead_letters: DeadLetterIndex
    peers: Peers
    kafka_options: dict[str, Any]
    inbox_memory: timedelta
    """How long the consumers' inboxes remember an event: older dead letters are refused."""
    group_prefix: str
    """The topic prefix, which the consumer groups' ids share (``shared.app.platform``)."""
    audit: AuditTrail | None = None
    """Where the replays and bulk actions are recorded, and the audit page reads."""


@dataclass(frozen=True)
class StuckSaga:
    order: store.Order
    why: Why


REPLAY_RESPONSES: dict[int | str, dict[str, Any]] = {
    409: {
        "description": "The dead letter is older than the inboxes' memory "
        "(SAGAKIT_INBOX_RETENTION_HOURS): replaying it could apply it twice"
    },
}


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    topic: str = Field(min_length=1)
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["clock"] = _clock
    templates.env.filters["moment"] = _moment
    templates.env.filters["age"] = _age
    templates.env.filters["bytes"] = topic_pages.human_bytes
    templates.env.globals["refresh_seconds"] = REFRESH_SECONDS
    return templates


def router(explorer: Explorer) -> APIRouter:
    """``/ui``: sagas, one order, dead letters, consumer groups, and the page's assets."""
    pages = APIRouter(prefix="/ui", tags=["explorer"], include_in_schema=False)
    templates = _templates()

    def render(request: Request, name: str, **context: Any) -> HTMLResponse:
        context["now"] = datetime.now(UTC)
        response = templates.TemplateResponse(request, name, context)
        response.headers["Cache-Control"] = "no-store"
        return response

    @pages.get("", response_class=HTMLResponse)
    async def sagas(
        request: Request,
        status_: Annotated[str, Query(alias="status")] = "",
        customer_id: str = "",
        older_than: str = "",
        stuck_after: Annotated[StorableStr, Query(max_length=MAX_ORDER_ID_CHARS)] = "",
    ) -> HTMLResponse:
        """Sagas by status, the stuck ones first (``stuck_after``: their next page)."""
        problems: list[str] = []
        chosen = _status(status_, problems)
        age = _parse_age(older_than, problems)
        criteria, dlq_problem = await _criteria(explorer.finder)
        if dlq_problem:
            problems.append(dlq_problem)
        scope = store.OrderQuery(customer_id=customer_id or None, older_than=age)
        listed = store.OrderQuery(status=chosen, customer_id=scope.customer_id, older_than=age)
        stuck_query = store.OrderQuery(customer_id=scope.customer_id, stuck=criteria)
        async with explorer.units() as uow:
            counts = await store.count_by_status(uow.session, scope)
            orders = await store.find_orders(uow.session, listed, limit=LISTED)
            stuck = await store.find_orders(
                uow.session, stuck_query, limit=LISTED, after=stuck_after or None
            )
            stuck_total = await store.count_orders(uow.session, stuck_query)
            topics = await store.dead_letter_topics(uow.session, [o.order_id for o in stuck])
        return render(
            request,
            "sagas.html",
            counts=counts,
            orders=orders,
            stuck=_why_stuck(stuck, criteria, topics),
            stuck_ids={order.order_id for order in stuck},
            stuck_total=stuck_total,
            stuck_next=stuck[-1].order_id if len(stuck) == LISTED else None,
            filters={"status": status_, "customer_id": customer_id, "older_than": older_than},
            statuses=list(OrderStatus),
            problems=problems,
        )

    @pages.get("/orders/{order_id}", response_class=HTMLResponse)
    async def order_page(request: Request, order_id: str) -> HTMLResponse:
        """One saga: its swimlanes, what the other services hold, its dead letters."""
        criteria, problem = await _criteria(explorer.finder)
        async with explorer.units() as uow:
            order = await store.get_order(uow.session, order_id)
            entries = await store.timeline_entries(uow.session, order_id)
            positions = await store.dead_letter_positions(uow.session, order_id, limit=LISTED)
        if order is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no order {order_id!r}")
        try:
            letters = await asyncio.wait_for(explorer.dead_letters.read(positions), READ_TIMEOUT_S)
        except Exception as error:  # Kafka down: the page says so, the rest still shows
            letters = []
            problem = problem or f"cannot read the dead letters: {type(error).__name__}: {error}"
        topics = {position[0] for position in positions}
        return render(
            request,
            "order.html",
            order=order,
            lanes=swimlanes(entries),
            peers=await explorer.peers.views(order_id),
            why=_why(order, criteria, topics, datetime.now(UTC)),
            due=criteria.deadlines.due(order.status, order.updated_at),
            letters=letters,
            problems=[problem] if problem else [],
        )

    @pages.get("/dead-letters", response_class=HTMLResponse)
    async def dead_letters(request: Request) -> HTMLResponse:
        """Every dead-letter topic with its count, and its newest records."""
        _, problem = await _criteria(explorer.finder)
        index = explorer.dead_letters
        topics = [(topic, count, index.newest(topic)) for topic, count in index.counts().items()]
        return render(
            request,
            "dead_letters.html",
            topics=topics,
            total=sum(count for _, count, _ in topics),
            problems=[problem] if problem else [],
        )

    @pages.get("/dead-letters/groups", response_class=HTMLResponse)
    async def dead_letter_groups(request: Request) -> HTMLResponse:
        """The dead letters by topic, consumer group and error type, each group with a
        replay button (count first), and the bulk actions with their progress."""
        _, problem = await _criteria(explorer.finder)
        async with explorer.units() as uow:
            groups = await bulk.dead_letter_groups(uow.session)
            actions = await bulk.list_actions(uow.session, limit=LISTED)
        return render(
            request,
            "dead_letter_groups.html",
            groups=groups,
            total=sum(group.count for group in groups),
            actions=actions,
            problems=[problem] if problem else [],
        )

    @pages.get("/audit", response_class=HTMLResponse)
    async def audit(request: Request) -> HTMLResponse:
        """The newest actions of the audit trail: who did what, when, to how many."""
        problems = []
        entries: list[AuditEntry] = []
        if explorer.audit is not None:
            try:
                entries = await explorer.audit.newest(AUDIT_SHOWN)
            except Exception as error:  # Kafka down: the page says so
                problems.append(f"cannot read the audit trail: {type(error).__name__}: {error}")
        return render(request, "audit.html", entries=entries, problems=problems)

    @pages.get("/consumer-groups", response_class=HTMLResponse)
    async def consumer_groups(request: Request) -> HTMLResponse:
        """Each consumer group: its lag per partition and which instance owns which."""
        problems = []
        try:
            groups = await read_groups(explorer.kafka_options, explorer.group_prefix)
        except Exception as error:  # the page says Kafka did not answer, it does not fail
            groups = []
            problems.append(f"cannot read the consumer groups: {type(error).__name__}: {error}")
        return render(request, "groups.html", groups=groups, problems=problems)

    topic_pages.register(pages, explorer.kafka_options, explorer.group_prefix, render)

    @pages.get("/static/{name}")
    async def asset(name: str) -> FileResponse:
        """The page's script and style sheet (nothing is loaded from elsewhere)."""
        if name not in STATIC_FILES:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no asset {name!r}")
        return FileResponse(HERE / "static" / name, media_type=STATIC_FILES[name])

    return pages


def admin_router(explorer: Explorer) -> APIRouter:
    """The explorer's writes; the shell puts them behind the admin token."""
    writes = APIRouter(prefix="/ui", tags=["explorer"])

    @writes.post("/replay", responses={**BODY_RESPONSES, **REPLAY_RESPONSES})
    async def replay(body: ReplayRequest, request: Request) -> dict[str, int]:
        """Re-publish one dead letter to the topic it came from, for the group that
        dead-lettered it (the consumers' inboxes make a second replay of the same record
        harmless, as long as they remember it: an older one is refused)."""
        if body.topic not in explorer.dead_letters.topics:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_ENTITY, f"{body.topic!r} is not a dead-letter topic"
            )
        try:
            plan = await replay_dead_letters(
                explorer.kafka_options,
                body.topic,
                at=(body.partition, body.offset),
                memory=explorer.inbox_memory,
                timeout_s=REPLAY_TIMEOUT_S,
            )
        except (LookupError, TimeoutError) as error:
            message = str(error) or f"no answer from Kafka within {REPLAY_TIMEOUT_S:g} s"
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, message) from error
        for letter, age in plan.forgotten:
            reason = forgotten_reason(letter, age, explorer.inbox_memory)
            raise HTTPException(status.HTTP_409_CONFLICT, reason)
        if not plan.send:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                f"no dead letter at {body.topic}[{body.partition}]@{body.offset}",
            )
        where = f"{body.topic}[{body.partition}]@{body.offset}"
        await audited(explorer.audit, request, "dead_letter.replayed", where, len(plan.send))
        return {"replayed": len(plan.send)}

    return writes


async def _criteria(finder: StuckFinder) -> tuple[StuckCriteria, str | None]:
    """The stuck criteria, or the deadlines alone and why when the dead letters are unreadable."""
    try:
        return await finder.criteria(), None
    except Exception as error:  # Kafka down: the deadlines still tell the overdue sagas
        problem = (
            f"cannot read the dead-letter topics (the dead letters shown are those indexed "
            f"before): {type(error).__name__}: {error}"
        )
        return StuckCriteria(finder.deadlines), problem


def _why(
    order: store.Order, criteria: StuckCriteria, topics: Collection[str], now: datetime
) -> Why | None:
    return criteria.why(
        order.status,
        order.updated_at,
        now,
        dead_letter_topics=topics,
        outstanding=order.saga.outstanding_compensations,
    )


def _why_stuck(
    orders: list[store.Order], criteria: StuckCriteria, topics: Mapping[str, Collection[str]]
) -> list[StuckSaga]:
    now = datetime.now(UTC)
    found = []
    for order in orders:
        why = _why(order, criteria, topics.get(order.order_id, ()), now)
        if why is not None:
            found.append(StuckSaga(order, why))
    return found


def _status(text: str, problems: list[str]) -> OrderStatus | None:
    if not text:
        return None
    try:
        return OrderStatus(text)
    except ValueError:
        problems.append(f"unknown status {text!r}: one of {', '.join(OrderStatus)}")
        return None


def _parse_age(text: str, problems: list[str]) -> timedelta | None:
    if not text:
        return None
    try:
        return _AGE.validate_python(text)
    except ValidationError:
        problems.append(f"age {text!r}: give seconds (90) or an ISO 8601 duration (PT5M)")
        return None


def _clock(moment: datetime | None) -> str:
    """``12:03:04.567`` (UTC)."""
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]


def _moment(moment: datetime | None) -> str:
    """``2026-12-01 12:03:04`` (UTC)."""
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _age(moment: datetime, now: datetime) -> str:
    """How long ago: ``42 s``, ``3 min``, ``2 h 5 min``, ``3 d``."""
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d"
