"""A second, tiny saga on the platform: seat bookings, keyed by ``booking_id``.

BookingRequested (desk) -> SeatHeld / SeatUnavailable (seats) -> BookingConfirmed /
BookingRejected (desk). Two services declared with ``shared.app.declaration``, their own
event catalogue handed to the platform, and not one line of ``shared/`` written for them:
the proof that the platform knows no domain (tests/integration/test_booking_saga.py).
"""
