"""What a chaos run put into the system: the starting point verify measures against.

The services' databases hold only where things stand now; "money conserved" and "stock
conserved" need where they started. A run writes its manifest into its JSON report, and
``verify`` reads it back from there (``python -m deploy.chaos verify --manifest REPORT``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = ["Manifest"]


@dataclass
class Manifest:
    """Customers with their starting balances, skus with what was put in, orders accepted.

    Verify checks every order of these customers that the order service holds, accepted or
    not by the run's reckoning (a request whose answer was lost may still have made one).
    """

    balances: dict[str, Decimal | None] = field(default_factory=dict)
    """Starting balance of each customer; None for a customer without an account."""
    stock: dict[str, int | None] = field(default_factory=dict)
    """Units put in of each sku; None for a sku never stocked (unknown to inventory)."""
    orders: list[str] = field(default_factory=list)
    """The ids of the orders the API accepted."""

    def to_json(self) -> dict[str, Any]:
        return {
            "balances": {c: None if b is None else str(b) for c, b in self.balances.items()},
            "stock": dict(self.stock),
            "orders": list(self.orders),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        balances = data["balances"]
        return cls(
            balances={c: None if b is None else Decimal(b) for c, b in balances.items()},
            stock={
                sku: None if units is None else int(units) for sku, units in data["stock"].items()
            },
            orders=[str(order_id) for order_id in data["orders"]],
        )
