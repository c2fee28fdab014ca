"""The checks services declare for verify (services/<name>/checks.py, run by
deploy.chaos.service_checks): their verdicts on books built by hand, and how verify waits."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from deploy.chaos import service_checks
from deploy.chaos.checks import CheckResult
from deploy.chaos.endpoints import Endpoints
from deploy.chaos.service_checks import ServiceCheck, declared_checks, settled_result
from deploy.chaos.snapshot import OrderRow, PaymentRow, Snapshot
from services.analytics import checks as analytics
from services.analytics.model import Ending, OrderFacts, Outcome
from services.notification import checks as notification
from services.notification.checks import NotificationRow

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 7, 3, 0, 10, tzinfo=UTC)
MINUTE = T0.replace(second=0)


def order(order_id: str, status: str, reason: str | None = None, total: str = "10.00") -> OrderRow:
    return OrderRow(order_id, f"c-{order_id}", status, reason, Decimal(total), (("s", 1),))


def snapshot(*orders: OrderRow, refunded: tuple[str, ...] = ()) -> Snapshot:
    return Snapshot(
        orders={o.order_id: o for o in orders},
        payments={i: PaymentRow("REFUNDED", Decimal("10.00")) for i in refunded},
        accounts={},
        stock={},
        shipments={},
        reservations=None,
        emitted=None,
        timeline=None,
    )


RUN = snapshot(order("a", "COMPLETED"), order("b", "CANCELLED", "out_of_stock"), refunded=("b",))


def row(order_id: str, event_type: str, status: str = "delivered", **kw: Any) -> NotificationRow:
    fields = {"customer_id": f"c-{order_id}", "event_id": f"{order_id}-{event_type}"} | kw
    return NotificationRow(order_id=order_id, event_type=event_type, status=status, **fields)


TOLD = (row("a", "OrderCompleted"), row("b", "OrderCancelled"), row("b", "PaymentRefunded"))


def notified(*rows: NotificationRow, **kw: Any) -> list[str]:
    books = notification.Books(rows=rows, **({"webhook": True} | kw))
    return notification.judge(RUN, books).violations


def test_each_customer_told_once_of_each_end_and_refund_delivered_and_taken_holds() -> None:
    assert notification.expected(RUN) == {
        ("a", "OrderCompleted"): "c-a",
        ("b", "OrderCancelled"): "c-b",
        ("b", "PaymentRefunded"): "c-b",
    }
    assert notified(*TOLD, taken=frozenset(r.event_id for r in TOLD)) == []
    recorded = [row(r.order_id, r.event_type, "recorded") for r in TOLD]
    assert notified(*recorded, webhook=False) == []


def test_a_notification_twice_missing_for_another_customer_or_of_no_end_is_a_violation() -> None:
    twice = row("a", "OrderCompleted", event_id="a-copy")
    assert notified(*TOLD, twice) == ["order a: 2 notifications of OrderCompleted"]
    assert notified(*TOLD[:2]) == ["order b: no notification of PaymentRefunded"]
    assert notified(*TOLD[:2], retention=True) == []  # gone with the window, perhaps
    stranger = row("a", "OrderCompleted", customer_id="eve")
    assert notified(stranger, *TOLD[1:]) == [
        "notification a-OrderCompleted of order a: customer eve, the order's is c-a"
    ]
    assert notified(*TOLD, row("a", "OrderCancelled")) == [
        "order a: notified of OrderCancelled, not its end"
    ]


def test_a_saga_timed_out_then_completed_after_all_told_both_ends_holds() -> None:
    # The order service announced a timeout (OrderCancelled) and then, the parcel having
    # shipped, the completion: its customer is told of both. Seen in make chaos: 35 such
    # orders, each counted as "notified of OrderCancelled, not its end".
    run = replace(
        snapshot(order("t", "COMPLETED")),
        timeline={("t", "OrderCreated"): 1, ("t", "OrderCancelled"): 1, ("t", "OrderCompleted"): 1},
    )
    assert notification.expected(run) == {
        ("t", "OrderCompleted"): "c-t",
        ("t", "OrderCancelled"): "c-t",
    }
    both = notification.Books(
        rows=(row("t", "OrderCompleted"), row("t", "OrderCancelled")), webhook=True
    )
    assert notification.judge(run, both).violations == []
    one = notification.Books(rows=(row("t", "OrderCompleted"),), webhook=True)
    assert notification.judge(run, one).violations == ["order t: no notification of OrderCancelled"]


def test_a_notification_not_delivered_or_never_taken_by_the_receiver_is_a_violation() -> None:
    pending = row("a", "OrderCompleted", "pending")
    assert notified(pending, *TOLD[1:]) == [
        "notification a-OrderCompleted (OrderCompleted of a) pending"
    ]
    taken = frozenset(r.event_id for r in TOLD[1:])
    assert notified(*TOLD, taken=taken) == [
        "notification a-OrderCompleted delivered, but the receiver never took it"
    ]


def facts(
    outcome: Outcome, reason: str = "", total: str = "10.00", at: datetime = T0
) -> OrderFacts:
    return OrderFacts(at - timedelta(seconds=1), Ending(at, outcome, reason, Decimal(total)))


AGREEING = {
    "a": facts(Outcome.completed),
    "b": facts(Outcome.cancelled, "out_of_stock", "0"),
}
SUMMED = {
    (MINUTE, "completed", ""): (1, Decimal("10.00")),
    (MINUTE, "cancelled", "out_of_stock"): (1, Decimal("0")),
}


def counted(facts_of: dict[str, OrderFacts], summed: analytics.Outcomes) -> list[str]:
    books = analytics.Books(facts_of, summed, tuple(facts_of.values()))
    return analytics.judge(RUN, books).violations


def test_analytics_counting_each_end_as_the_order_service_says_holds() -> None:
    assert analytics.outcomes(AGREEING.values()) == SUMMED
    assert counted(AGREEING, SUMMED) == []


def test_an_end_analytics_missed_or_told_otherwise_is_a_violation() -> None:
    missed = {"a": AGREEING["a"], "b": OrderFacts(T0)}
    assert counted(missed, SUMMED)[0] == "order b CANCELLED: analytics has not counted its end"
    otherwise = AGREEING | {"a": facts(Outcome.completed, total="9.00")}
    assert counted(otherwise, SUMMED)[0].startswith("order a COMPLETED for 10.00: analytics says")


def test_a_summary_row_that_is_not_the_sum_of_its_orders_facts_is_a_violation() -> None:
    counted_twice = SUMMED | {(MINUTE, "completed", ""): (2, Decimal("20.00"))}
    assert counted(AGREEING, counted_twice) == [
        "minute 03:00, completed : the summary counts 2 order(s), 20.00; their facts 1, 10.00"
    ]


def test_the_services_declare_their_checks_in_their_folders() -> None:
    names = [check.name for check in declared_checks()]
    assert names == ["analytics agrees", "notifications once each"]  # by declared port


async def test_verify_reads_a_services_books_again_until_they_hold_and_keeps_the_last_verdict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service_checks, "POLL_S", 0.0)
    reads: list[int] = []

    async def read(endpoints: Endpoints, snap: Snapshot) -> int | None:
        reads.append(len(reads))
        if reads[-1] == 0:
            raise OSError("connection refused")  # the service restarting
        return reads[-1]

    def judge(snap: Snapshot, read: int) -> CheckResult:
        return CheckResult("late", violations=[] if read >= 3 else [f"read {read}"])

    late = ServiceCheck("late", read, judge)
    endpoints = Endpoints({})
    assert (await settled_result(late, endpoints, RUN, timeout=30)).ok
    assert reads == [0, 1, 2, 3]

    reads.clear()
    first = await settled_result(late, endpoints, RUN, timeout=0)
    assert first.violations == ["could not read: OSError('connection refused')"]

    async def unreachable(endpoints: Endpoints, snap: Snapshot) -> None:
        return None

    skipped = await settled_result(ServiceCheck("x", unreachable, judge), endpoints, RUN, 30)
    assert skipped.skipped and skipped.ok
