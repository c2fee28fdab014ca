import random

import pytest

from services.events import CATALOGUE, EVENT_TYPES, OrderCreated
from shared.backoff import backoff_delay
from shared.contracts.topics import Topics, kebab


def test_the_catalogue_names_the_contracts_topics() -> None:
    assert Topics(CATALOGUE).all(include_dlq=False) == [
        "order-created",
        "payment-processed",
        "payment-failed",
        "inventory-reserved",
        "inventory-failed",
        "order-shipped",
        "shipping-failed",
        "payment-refunded",
        "inventory-released",
        "order-completed",
        "order-cancelled",
    ]


def test_every_topic_has_a_dead_letter_topic() -> None:
    names = Topics(CATALOGUE).all()
    assert len(names) == 22
    assert "order-created-dlq" in names and "order-cancelled-dlq" in names


def test_a_prefix_separates_systems_sharing_a_cluster() -> None:
    topics = Topics(CATALOGUE, prefix="run7.")
    assert topics.for_event(OrderCreated) == "run7.order-created"
    assert topics.dlq(topics.for_event("PaymentFailed")) == "run7.payment-failed-dlq"


def test_every_event_of_the_catalogue_has_a_topic_and_a_dlq() -> None:
    topics = Topics(CATALOGUE).all()
    assert len(topics) == 2 * len(CATALOGUE) == 2 * len(EVENT_TYPES)
    for cls in CATALOGUE:
        assert f"{kebab(cls.type_name())}-dlq" in topics


def test_an_event_type_outside_the_catalogue_has_no_topic() -> None:
    with pytest.raises(ValueError, match="not in the event catalogue"):
        Topics(CATALOGUE).for_event("OrderTeleported")


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(n, base_ms=100, max_ms=1000, rng=rng) for n in range(1, 7)]
    ceilings = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(d, 6) for d in delays}) == len(delays)  # jittered, not a fixed schedule


def test_backoff_counts_retries_from_one() -> None:
    with pytest.raises(ValueError):
        backoff_delay(0, base_ms=100, max_ms=1000)
