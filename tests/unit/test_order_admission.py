"""Admission control of POST /orders (services.order.admission): the in-flight bound."""

from __future__ import annotations

import pytest

from services.order.admission import Admission, Overloaded


def test_past_the_in_flight_bound_a_request_is_refused_and_a_freed_place_is_taken_again() -> None:
    admission = Admission(2)
    with admission.admit(), admission.admit():
        assert admission.in_flight == 2
        with pytest.raises(Overloaded) as refused, admission.admit():
            pass
    assert (refused.value.reason, refused.value.retry_after_s) == ("in_flight", 1)
    assert admission.in_flight == 0
    with admission.admit():
        assert admission.in_flight == 1
    assert admission.shed == {"in_flight": 1}


def test_a_place_is_given_back_when_the_request_fails() -> None:
    admission = Admission(1)
    with pytest.raises(RuntimeError), admission.admit():
        raise RuntimeError("the database went away")
    assert admission.in_flight == 0
