"""The order service's commands in ``sagakit`` (``services.cli`` finds them here): ``orders``
(the order API), ``sagas`` and ``bulk`` (bulk actions), and ``dlq groups`` /
``dlq replay-group`` added to the platform's ``dlq`` group (``dlq.py``). All of them go
through the order service, which hosts the saga explorer and its dead-letter index."""

from __future__ import annotations

import typer

from services.order.cli import bulk, dlq, orders, sagas

__all__ = ["COMMANDS"]

COMMANDS: list[tuple[str, typer.Typer]] = [
    ("orders", orders.app),
    ("sagas", sagas.app),
    ("bulk", bulk.app),
    # Named like the platform's group: its commands join sagakit dlq.
    ("dlq", dlq.app),
]
