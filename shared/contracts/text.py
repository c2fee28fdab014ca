"""Text a request may carry: strings PostgreSQL can store, ids short enough to index.

Every string field of a request model and every string path, query or header parameter is a
``StorableStr`` (or one of the ids below), so that input the database would refuse is refused
first, with a 422 that names the field, instead of reaching a query and failing as a 500.

What PostgreSQL's ``text`` (and ``jsonb``) refuses of a Python ``str``: the NUL character.
Lone surrogates, the other strings UTF-8 cannot encode, never get this far: pydantic refuses
them as strings (``string_unicode``), and a URL's percent-escapes are decoded with
replacement characters. An id that is a primary key must also fit a B-tree index entry
(about 2.7 kB): hence the length limits on path parameters that become keys.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import Path
from pydantic import AfterValidator

__all__ = [
    "MAX_CUSTOMER_ID_CHARS",
    "MAX_ORDER_ID_CHARS",
    "MAX_SKU_CHARS",
    "CustomerIdPath",
    "OrderIdPath",
    "SkuPath",
    "StorableStr",
    "refuse_nul",
]

MAX_CUSTOMER_ID_CHARS: Final = 128
MAX_SKU_CHARS: Final = 64
MAX_ORDER_ID_CHARS: Final = 128
"""Order ids are UUIDs (36 characters); a longer one cannot name an order."""


def refuse_nul(value: str) -> str:
    """``value`` unchanged, or ``ValueError`` when it holds a NUL character."""
    if "\x00" in value:
        raise ValueError("must not contain the NUL character (\\u0000): it cannot be stored")
    return value


StorableStr = Annotated[str, AfterValidator(refuse_nul)]
"""A string without NUL characters; add length limits with ``Field`` as usual."""

# The length limits come before the NUL check, so a long id is told "at most N characters".
CustomerIdPath = Annotated[
    str, Path(min_length=1, max_length=MAX_CUSTOMER_ID_CHARS), AfterValidator(refuse_nul)
]
SkuPath = Annotated[str, Path(min_length=1, max_length=MAX_SKU_CHARS), AfterValidator(refuse_nul)]
OrderIdPath = Annotated[
    str, Path(min_length=1, max_length=MAX_ORDER_ID_CHARS), AfterValidator(refuse_nul)
]
