"""Events leaving a service: the producer, the outbox relay, dead-lettering, and the retention
that keeps the outbox and inbox bounded.
"""
