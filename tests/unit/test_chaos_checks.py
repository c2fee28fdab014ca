"""The books verify checks (deploy.chaos.checks), on snapshots built by hand."""

from __future__ import annotations

from decimal import Decimal

import pytest

from deploy.chaos.checks import no_double_effect
from deploy.chaos.manifest import Manifest
from deploy.chaos.snapshot import OrderRow, PaymentRow, Snapshot

pytestmark = pytest.mark.unit


def snapshot(payment_status: str, emitted: dict[str, int]) -> Snapshot:
    order = OrderRow("o-1", "c-1", "CANCELLED", "out_of_stock", Decimal("5.00"), (("s", 1),))
    return Snapshot(
        orders={"o-1": order},
        payments={"o-1": PaymentRow(payment_status, Decimal("5.00"))},
        accounts={},
        stock={},
        shipments={},
        reservations=None,
        emitted={("o-1", event_type): count for event_type, count in emitted.items()},
        timeline={},
    )


def test_a_refund_whose_charge_the_outbox_no_longer_holds_is_no_violation() -> None:
    # Retention purged the PaymentProcessed row; the payment's own row says it was charged.
    snap = snapshot("REFUNDED", {"PaymentRefunded": 1})

    assert no_double_effect(Manifest(), snap).violations == []


def test_a_refund_of_a_payment_never_charged_is_a_violation() -> None:
    snap = snapshot("DECLINED", {"PaymentRefunded": 1})

    assert no_double_effect(Manifest(), snap).violations == ["order o-1: refunded without a charge"]
