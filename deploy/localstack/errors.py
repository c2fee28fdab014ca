"""The one error the local stack raises on purpose."""

__all__ = ["StackError"]


class StackError(Exception):
    """Something the user has to fix; the message names what went wrong and what to do."""
