"""Property tests of ``decode``: whatever bytes a topic holds, the answer is an event or
``NotAnEvent``, never another exception (which would not be dead-lettered as bytes that are
not an event, and could stop a partition)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.events import CATALOGUE, OrderCreated, decode
from shared.contracts.errors import NotAnEvent
from shared.contracts.events import Event

EVENT_TYPES = [event.type_name() for event in CATALOGUE]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

# Timestamps at the edges of what datetime holds, in any offset: moving one to UTC may leave
# the range (year 1 at +01:00 is year 0 in UTC).
edge_times = st.builds(
    lambda moment, minutes: moment.replace(tzinfo=timezone(timedelta(minutes=minutes))),
    st.one_of(
        st.datetimes(max_value=datetime(1, 1, 2)),
        st.datetimes(min_value=datetime(9999, 12, 30)),
        st.datetimes(),
    ),
    st.integers(-23 * 60 - 59, 23 * 60 + 59),
).map(datetime.isoformat)


def valid_envelope() -> dict[str, Any]:
    event = OrderCreated.first(
        order_id="o-1",
        producer="order",
        customer_id="c",
        items=[{"sku": "tea", "quantity": 1, "unit_price": "1.00"}],
        total="1.00",
    )
    return dict(json.loads(event.to_json()))


@st.composite
def almost_events(draw: st.DrawFn) -> bytes:
    """An event's JSON with some fields changed, removed or added, of any catalogue type."""
    body = valid_envelope()
    body["event_type"] = draw(st.sampled_from(EVENT_TYPES) | st.text(max_size=20))
    for name in draw(st.lists(st.sampled_from(sorted(body)), unique=True)):
        del body[name]
    body |= draw(st.dictionaries(st.sampled_from(sorted(valid_envelope())), json_values))
    if draw(st.booleans()):
        body["occurred_at"] = draw(edge_times)
    return json.dumps(body).encode()


def decodes_or_refuses(value: bytes) -> None:
    try:
        event = decode(value)
    except NotAnEvent as refusal:
        assert str(refusal)  # it says why
    else:
        assert isinstance(event, Event)
        assert event.occurred_at.tzinfo is UTC


@settings(max_examples=500)
@given(st.binary(max_size=512))
def test_decoding_arbitrary_bytes_only_ever_raises_not_an_event(value: bytes) -> None:
    decodes_or_refuses(value)


@settings(max_examples=200)
@given(almost_events())
def test_decoding_an_almost_valid_event_only_ever_raises_not_an_event(value: bytes) -> None:
    decodes_or_refuses(value)


@settings(max_examples=200)
@given(json_values)
def test_decoding_any_json_only_ever_raises_not_an_event(value: Any) -> None:
    decodes_or_refuses(json.dumps(value).encode())


def test_a_time_that_leaves_the_calendar_in_utc_is_not_an_event() -> None:
    body = valid_envelope() | {"occurred_at": "0001-01-01T00:00:00+01:00"}

    decodes_or_refuses(json.dumps(body).encode())
