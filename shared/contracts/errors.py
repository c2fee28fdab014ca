"""The error vocabulary the consumer runner acts on.

A handler signals how its failure should be treated by the class it raises: the runner
retries a ``TransientError`` with backoff, dead-letters a ``PermanentError`` at once, and
dead-letters ``NotAnEvent`` bytes without calling any handler.
"""

__all__ = ["NotAnEvent", "PermanentError", "SagakitError", "TransientError"]


class SagakitError(Exception):
    """Base of every error sagakit raises on purpose."""


class TransientError(SagakitError):
    """A failure that may pass if the same record is tried again (timeouts, lost connections)."""


class PermanentError(SagakitError):
    """A failure that no retry will fix: the record goes to the dead-letter topic at once."""


class NotAnEvent(PermanentError):
    """Bytes that cannot be decoded into an event of the catalogue."""
