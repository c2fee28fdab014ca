"""The reference system's ids in requests: how long each may be, and its path parameter.

The length limits come before the NUL check (``shared.contracts.text``), so a long id is told
"at most N characters"; an id that becomes a primary key must fit a B-tree index entry.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import Path
from pydantic import AfterValidator

from shared.contracts.text import refuse_nul

__all__ = [
    "MAX_CUSTOMER_ID_CHARS",
    "MAX_ORDER_ID_CHARS",
    "MAX_SKU_CHARS",
    "CustomerIdPath",
    "OrderIdPath",
    "SkuPath",
]

MAX_CUSTOMER_ID_CHARS: Final = 128
MAX_SKU_CHARS: Final = 64
MAX_ORDER_ID_CHARS: Final = 128
"""Order ids are UUIDs (36 characters); a longer one cannot name an order."""

CustomerIdPath = Annotated[
    str, Path(min_length=1, max_length=MAX_CUSTOMER_ID_CHARS), AfterValidator(refuse_nul)
]
SkuPath = Annotated[str, Path(min_length=1, max_length=MAX_SKU_CHARS), AfterValidator(refuse_nul)]
OrderIdPath = Annotated[
    str, Path(min_length=1, max_length=MAX_ORDER_ID_CHARS), AfterValidator(refuse_nul)
]
