from datetime import UTC, datetime, timedelta

import pytest

from services.order.app import OrderSettings
from services.order.deadlines import Deadlines
from services.order.model import OrderStatus

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_each_waiting_status_has_its_own_deadline_and_terminal_ones_none() -> None:
    deadlines = Deadlines(timedelta(seconds=1), timedelta(seconds=2), timedelta(seconds=3))
    assert deadlines.due(OrderStatus.PENDING, T0) == T0 + timedelta(seconds=1)
    assert deadlines.due(OrderStatus.PAID, T0) == T0 + timedelta(seconds=2)
    assert deadlines.due(OrderStatus.RESERVED, T0) == T0 + timedelta(seconds=3)
    assert deadlines.due(OrderStatus.COMPLETED, T0) is None
    assert deadlines.due(OrderStatus.CANCELLED, T0) is None


def test_overdue_from_the_deadline_on_never_for_terminal_sagas() -> None:
    deadlines = Deadlines(pending=timedelta(seconds=30))
    assert not deadlines.is_overdue(OrderStatus.PENDING, T0, T0 + timedelta(seconds=29))
    assert deadlines.is_overdue(OrderStatus.PENDING, T0, T0 + timedelta(seconds=30))
    assert not deadlines.is_overdue(OrderStatus.COMPLETED, T0, T0 + timedelta(days=9))


def test_a_deadline_must_be_positive() -> None:
    with pytest.raises(ValueError, match="paid deadline"):
        Deadlines(paid=timedelta(0))


def test_the_order_settings_give_the_deadlines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGAKIT_DEADLINE_PAID_SECONDS", "7.5")
    deadlines = OrderSettings().deadlines()
    assert deadlines.paid == timedelta(seconds=7.5)
    assert deadlines.pending == timedelta(seconds=30)


def test_the_sweep_interval_is_a_positive_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert OrderSettings().deadline_sweep_interval_seconds == 5.0
    monkeypatch.setenv("SAGAKIT_DEADLINE_SWEEP_INTERVAL_SECONDS", "0.5")
    assert OrderSettings().deadline_sweep_interval_seconds == 0.5
    monkeypatch.setenv("SAGAKIT_DEADLINE_SWEEP_INTERVAL_SECONDS", "0")
    with pytest.raises(ValueError, match="deadline_sweep_interval_seconds"):
        OrderSettings()
