"""The invariants a system of sagas must keep, checked over one snapshot (no I/O here).

Once every saga has ended:

- **sagas terminal**: every accepted order is in the order service and ``COMPLETED`` or
  ``CANCELLED`` (nothing lost, nothing stuck);
- **money conserved**: each customer's starting balance minus the current one equals the
  totals of their ``COMPLETED`` orders; a customer without an account has none afterwards;
- **stock conserved**: for each sku ``available + reserved + shipped`` equals what was put in,
  ``reserved`` is 0, and ``shipped`` equals the units of the ``COMPLETED`` orders;
- **no double effect**: no order has any event type twice among the events the services
  emitted or the timeline recorded (a second charge, refund, reservation, release or
  shipment would be one); the exact equalities above catch a second effect too;
- **statuses agree**: a ``COMPLETED`` order's payment is ``CHARGED`` for its total, its
  reservation ``SHIPPED`` and its shipment ``SHIPPED`` with a tracking id; a cancelled one's
  payment, reservation and shipment are what its ``cancel_reason`` implies (compensations
  done: ``CANCELLED`` is reported only once they are);
- **services ready**: every instance answers ``/readyz`` afterwards.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from deploy.chaos.manifest import Manifest
from deploy.chaos.snapshot import OrderRow, Snapshot

__all__ = ["CHECKS", "CheckResult", "check"]

TERMINAL = ("COMPLETED", "CANCELLED")
SHOWN_PER_CHECK = 20
"""Violations kept per check in a report: the first few tell the story, the count the size."""

# What a cancelled order's other records may be, by its cancel reason: (payment statuses,
# reservation statuses, shipment statuses); None stands for "no such record".
_CANCELLED: dict[str | None, tuple[set[str | None], set[str | None], set[str | None]]] = {
    "payment_declined": ({"DECLINED", None}, {None}, {None}),
    "out_of_stock": ({"REFUNDED"}, {"FAILED", None}, {None}),
    "shipping_failed": ({"REFUNDED"}, {"RELEASED"}, {"FAILED"}),
    # The deadline sweeper's cancel: shipping refused the parcel for good, and payment and
    # inventory gave back what they held, or voided what came after (docs/events.md).
    "timed_out": ({"REFUNDED", "DECLINED"}, {"RELEASED", "FAILED"}, {"FAILED"}),
}


@dataclass
class CheckResult:
    """One invariant: how many things it looked at, and every way they break it."""

    name: str
    checked: int = 0
    violations: list[str] = field(default_factory=list)
    skipped: str | None = None
    """Why the check could not run (what it needs was not read)."""

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "checked": self.checked,
            "violations": len(self.violations),
            "examples": self.violations[:SHOWN_PER_CHECK],
            "skipped": self.skipped,
        }


def _completed(orders: Iterable[OrderRow]) -> list[OrderRow]:
    return [order for order in orders if order.status == "COMPLETED"]


def sagas_terminal(manifest: Manifest, snap: Snapshot) -> CheckResult:
    result = CheckResult("sagas terminal", checked=len(set(manifest.orders) | set(snap.orders)))
    for order_id in manifest.orders:
        if order_id not in snap.orders:
            result.violations.append(f"order {order_id} was accepted but the service lacks it")
    for order in snap.orders.values():
        if order.status not in TERMINAL:
            result.violations.append(f"order {order.order_id} still {order.status}")
    return result


def money_conserved(manifest: Manifest, snap: Snapshot) -> CheckResult:
    result = CheckResult("money conserved", checked=len(manifest.balances))
    spent: defaultdict[str, Decimal] = defaultdict(Decimal)
    completed: Counter[str] = Counter()
    for order in _completed(snap.orders.values()):
        spent[order.customer_id] += order.total
        completed[order.customer_id] += 1
    for customer, start in manifest.balances.items():
        current = snap.accounts.get(customer)
        if start is None:
            if current is not None or completed[customer]:
                result.violations.append(
                    f"customer {customer} had no account: now {current}, "
                    f"{completed[customer]} order(s) completed"
                )
        elif current is None:
            result.violations.append(f"customer {customer}: account gone")
        elif start - current != spent[customer]:
            result.violations.append(
                f"customer {customer}: balance {start} -> {current} (taken {start - current}), "
                f"COMPLETED orders total {spent[customer]} ({completed[customer]} order(s))"
            )
    return result


def stock_conserved(manifest: Manifest, snap: Snapshot) -> CheckResult:
    result = CheckResult("stock conserved", checked=len(manifest.stock))
    shipped: Counter[str] = Counter()
    for order in _completed(snap.orders.values()):
        for sku, quantity in order.lines:
            shipped[sku] += quantity
    for sku, put_in in manifest.stock.items():
        row = snap.stock.get(sku)
        if put_in is None:
            if row is not None or shipped[sku]:
                result.violations.append(f"sku {sku} was never stocked: now {row}")
            continue
        if row is None:
            result.violations.append(f"sku {sku}: {put_in} put in, inventory lacks it")
            continue
        if row.available + row.reserved + row.shipped != put_in:
            result.violations.append(f"sku {sku}: {put_in} put in, now {row}")
        if row.reserved:
            result.violations.append(f"sku {sku}: {row.reserved} still reserved at rest")
        if row.shipped != shipped[sku]:
            result.violations.append(
                f"sku {sku}: {row.shipped} shipped, COMPLETED orders hold {shipped[sku]}"
            )
    return result


def no_double_effect(manifest: Manifest, snap: Snapshot) -> CheckResult:
    result = CheckResult("no double effect", checked=len(snap.orders))
    if snap.emitted is None or snap.timeline is None:
        result.skipped = "needs the services' databases (outboxes and timeline)"
        return result
    for where, counts in (("emitted", snap.emitted), ("in the timeline", snap.timeline)):
        for (order_id, event_type), count in sorted(counts.items()):
            if count > 1:
                result.violations.append(f"order {order_id}: {event_type} {count} times {where}")
    for order_id in snap.orders:
        charged = snap.emitted.get((order_id, "PaymentProcessed"), 0)
        declined = snap.emitted.get((order_id, "PaymentFailed"), 0)
        refunded = snap.emitted.get((order_id, "PaymentRefunded"), 0)
        if charged and declined:
            result.violations.append(f"order {order_id}: both charged and declined")
        # Only a charged payment becomes REFUNDED, so its row proves the charge even when
        # retention has purged the PaymentProcessed outbox row (a soak's short windows).
        payment = snap.payments.get(order_id)
        proven = charged or (payment is not None and payment.status == "REFUNDED")
        if refunded > (1 if proven else 0):
            result.violations.append(f"order {order_id}: refunded without a charge")
    return result


def statuses_agree(manifest: Manifest, snap: Snapshot) -> CheckResult:
    result = CheckResult("statuses agree", checked=len(snap.orders))
    for order in snap.orders.values():
        payment = snap.payments.get(order.order_id)
        shipment = snap.shipments.get(order.order_id)
        reservation = (snap.reservations or {}).get(order.order_id)
        pay_status = payment.status if payment else None
        ship_status = shipment.status if shipment else None
        if order.status == "COMPLETED":
            if pay_status != "CHARGED" or (payment and payment.amount != order.total):
                result.violations.append(
                    f"COMPLETED order {order.order_id} of {order.total}: payment {payment}"
                )
            if ship_status != "SHIPPED" or not (shipment and shipment.tracking_id):
                result.violations.append(f"COMPLETED order {order.order_id}: shipment {shipment}")
            if snap.reservations is not None and reservation != "SHIPPED":
                result.violations.append(
                    f"COMPLETED order {order.order_id}: reservation {reservation}"
                )
        elif order.status == "CANCELLED":
            allowed = _CANCELLED.get(order.cancel_reason)
            if allowed is None:
                result.violations.append(
                    f"CANCELLED order {order.order_id}: reason {order.cancel_reason!r}"
                )
                continue
            payments, reservations, shipments = allowed
            if pay_status not in payments:
                result.violations.append(
                    f"order {order.order_id} cancelled ({order.cancel_reason}): payment {payment}"
                )
            if snap.reservations is not None and reservation not in reservations:
                result.violations.append(
                    f"order {order.order_id} cancelled ({order.cancel_reason}): "
                    f"reservation {reservation}"
                )
            if ship_status not in shipments:
                result.violations.append(
                    f"order {order.order_id} cancelled ({order.cancel_reason}): shipment {shipment}"
                )
    return result


def services_ready(manifest: Manifest, snap: Snapshot) -> CheckResult:
    result = CheckResult("services ready", checked=snap.instances)
    result.violations = [f"{url} does not answer /readyz" for url in snap.unready]
    return result


CHECKS: tuple[Callable[[Manifest, Snapshot], CheckResult], ...] = (
    sagas_terminal,
    money_conserved,
    stock_conserved,
    no_double_effect,
    statuses_agree,
    services_ready,
)


def check(manifest: Manifest, snapshot: Snapshot) -> list[CheckResult]:
    """Every invariant over ``snapshot``, measured against what ``manifest`` put in."""
    return [one(manifest, snapshot) for one in CHECKS]
