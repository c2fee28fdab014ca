"""Text a request may carry: strings PostgreSQL can store.

Every string field of a request model and every string path, query or header parameter is a
``StorableStr`` (or an id type built on it, as ``services/ids.py`` does for the reference
system), so that input the database would refuse is refused first, with a 422 that names the
field, instead of reaching a query and failing as a 500.

What PostgreSQL's ``text`` (and ``jsonb``) refuses of a Python ``str``: the NUL character.
Lone surrogates, the other strings UTF-8 cannot encode, never get this far: pydantic refuses
them as strings (``string_unicode``), and a URL's percent-escapes are decoded with
replacement characters. An id that is a primary key must also fit a B-tree index entry
(about 2.7 kB): hence length limits on the path parameters that become keys.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

__all__ = ["StorableStr", "refuse_nul"]


def refuse_nul(value: str) -> str:
    """``value`` unchanged, or ``ValueError`` when it holds a NUL character."""
    if "\x00" in value:
        raise ValueError("must not contain the NUL character (\\u0000): it cannot be stored")
    return value


StorableStr = Annotated[str, AfterValidator(refuse_nul)]
"""A string without NUL characters; add length limits with ``Field`` as usual."""
