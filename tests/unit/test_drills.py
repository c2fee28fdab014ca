"""Failure injection as a layer: each service's business fault, put in front of its rule by
its declaration, and nothing of it when failure injection is switched off."""

from decimal import Decimal

import pytest

from services.events import InventoryReserved, LineItem, OrderCreated, PaymentProcessed
from services.faults import FaultSpec
from services.inventory import drills as inventory_drills
from services.inventory import handlers as inventory
from services.inventory.app import service as inventory_service
from services.inventory.drills import OUT_OF_STOCK
from services.inventory.model import FailureReason, ReservationStatus, StockLevel
from services.order.app import service as order_service
from services.payment import drills as payment_drills
from services.payment import handlers as payment
from services.payment.app import service as payment_service
from services.payment.drills import DECLINE
from services.payment.model import PaymentStatus
from services.shipping import drills as shipping_drills
from services.shipping import handlers as shipping
from services.shipping.app import service as shipping_service
from services.shipping.drills import FAIL
from services.shipping.model import ShipmentStatus
from shared.consuming.faults import INFRASTRUCTURE_KINDS, FaultKind, FaultRegistry, business_fault

pytestmark = pytest.mark.unit

ITEMS = [{"sku": "BOOK", "quantity": 2, "unit_price": "5.00"}]


def armed(kind: FaultKind, order_id: str) -> FaultRegistry:
    faults = FaultRegistry(INFRASTRUCTURE_KINDS | {kind})
    faults.add(FaultSpec(kind=kind, order_ids=[order_id], count=1))
    return faults


def test_each_service_accepts_its_business_kind_and_the_infrastructure_ones() -> None:
    assert order_service.fault_kinds == INFRASTRUCTURE_KINDS
    assert payment_service.fault_kinds == INFRASTRUCTURE_KINDS | {DECLINE}
    assert inventory_service.fault_kinds == INFRASTRUCTURE_KINDS | {OUT_OF_STOCK}
    assert shipping_service.fault_kinds == INFRASTRUCTURE_KINDS | {FAIL}


def test_a_decline_fault_declines_a_covered_charge_and_keeps_the_balance() -> None:
    decide = business_fault(
        DECLINE,
        armed(DECLINE, "o-1"),
        payment.charge_rule,
        payment_drills.declined,
    )
    order = OrderCreated.first(
        order_id="o-1", producer="order", customer_id="c", items=ITEMS, total="10.00"
    )
    other = order.model_copy(update={"order_id": "o-2"})

    declined = decide(order, Decimal("100.00"))
    assert (declined.status, declined.reason) == (PaymentStatus.DECLINED, "injected_decline")
    assert declined.new_balance == Decimal("100.00")
    assert decide(other, Decimal("100.00")).new_balance == Decimal("90.00")


def test_an_out_of_stock_fault_fails_every_sku_though_the_stock_suffices() -> None:
    decide = business_fault(
        OUT_OF_STOCK,
        armed(OUT_OF_STOCK, "o-1"),
        inventory.reserve_rule,
        inventory_drills.out_of_stock,
    )
    paid = PaymentProcessed.first(
        order_id="o-1",
        producer="payment",
        customer_id="c",
        amount="10.00",
        items=[LineItem(sku="BOOK", quantity=1), LineItem(sku="PEN", quantity=1)],
    )
    levels = {"BOOK": StockLevel(available=5), "PEN": StockLevel(available=5)}

    result = decide(paid, levels)
    assert (result.status, result.reason) == (ReservationStatus.FAILED, FailureReason.out_of_stock)
    assert (result.failed_skus, result.levels) == (("BOOK", "PEN"), {})


def test_a_fail_fault_fails_the_shipment_without_a_tracking_id() -> None:
    decide = business_fault(FAIL, armed(FAIL, "o-1"), shipping.ship_rule, shipping_drills.failed)
    reserved = InventoryReserved.first(
        order_id="o-1", producer="inventory", items=[LineItem(sku="BOOK", quantity=1)]
    )

    failed = decide(reserved)
    assert (failed.status, failed.tracking_id, failed.reason) == (
        ShipmentStatus.FAILED,
        None,
        "injected_failure",
    )
    assert decide(reserved).shipped  # count 1: the next attempt is the rule's


@pytest.mark.parametrize(("setting", "has_faults"), [("true", True), ("false", False)])
def test_failure_injection_is_a_setting_that_removes_the_faults_routes(
    setting: str, has_faults: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAGAKIT_FAULT_INJECTION", setting)
    monkeypatch.setenv("SAGAKIT_ADMIN_TOKEN", "t")
    paths = set(payment_service.app().openapi()["paths"])

    assert ("/faults" in paths) is has_faults
    assert "/accounts/{customer_id}" in paths
