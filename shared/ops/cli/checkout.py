"""Whether a tool of the sagakit checkout (``deploy/``) is installed beside the platform.

``sagakit stack``, ``chaos`` and ``verify`` run the checkout's tools as commands; a sagakit
installed from its wheel has none of them, and says so in one line rather than a traceback.
"""

from __future__ import annotations

import importlib.util

__all__ = ["has_module"]


def has_module(name: str) -> bool:
    """Whether ``name`` (``deploy.localstack``, say) can be imported, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # its parent package is missing too (find_spec imports it)
        return False
