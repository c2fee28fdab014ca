import re

import pytest

from services.shipping.model import (
    FailureReason,
    ShipmentDecision,
    ShipmentStatus,
    decide_shipment,
    refuse_shipment,
    should_ship,
    tracking_id_for,
)

pytestmark = pytest.mark.unit


def test_a_tracking_id_is_trk_and_ten_upper_hex_digits() -> None:
    assert re.fullmatch(r"TRK-[0-9A-F]{10}", tracking_id_for("order-1"))


def test_the_same_order_always_gets_the_same_tracking_id() -> None:
    assert tracking_id_for("order-1") == tracking_id_for("order-1")


def test_the_tracking_id_is_the_sha256_of_the_order_id() -> None:
    # sha256("abc") starts with ba7816bf8f
    assert tracking_id_for("abc") == "TRK-BA7816BF8F"


def test_different_orders_get_different_tracking_ids() -> None:
    ids = {tracking_id_for(f"order-{n}") for n in range(1000)}

    assert len(ids) == 1000


def test_an_order_is_shipped_with_its_tracking_id() -> None:
    decision = decide_shipment("order-1")

    assert decision == ShipmentDecision(ShipmentStatus.SHIPPED, tracking_id_for("order-1"), None)
    assert decision.shipped


def test_an_order_without_a_shipment_may_be_shipped() -> None:
    assert should_ship(None)


@pytest.mark.parametrize("existing", list(ShipmentStatus))
def test_an_order_with_a_shipment_is_never_shipped_again(existing: ShipmentStatus) -> None:
    assert not should_ship(existing)


def test_a_refused_shipment_fails_for_good_as_order_cancelled() -> None:
    decision = refuse_shipment()

    assert decision == ShipmentDecision(ShipmentStatus.FAILED, None, FailureReason.order_cancelled)
    assert not should_ship(decision.status)
