"""Payment's tables and the queries its handlers and routes need."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import (
    Column,
    DateTime,
    MetaData,
    Numeric,
    Table,
    Text,
    bindparam,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.payment.model import PaymentStatus
from shared.storage.sql import InsertManyUnlessPresent

__all__ = ["Payment", "accounts", "metadata", "payments"]

metadata = MetaData()

accounts = Table(
    "accounts",
    metadata,
    Column("customer_id", Text, primary_key=True),
    Column("balance", Numeric(18, 2), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

payments = Table(
    "payments",
    metadata,
    Column("order_id", Text, primary_key=True),
    Column("customer_id", Text, nullable=False),
    Column("amount", Numeric(18, 2), nullable=False),
    Column("status", Text, nullable=False),
    Column("reason", Text, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


@dataclass(frozen=True)
class Payment:
    order_id: str
    customer_id: str
    amount: Decimal
    status: PaymentStatus
    reason: str | None


async def lock_balance(session: AsyncConnection, customer_id: str) -> Decimal | None:
    """The customer's balance, locked until commit (two instances may charge one customer)."""
    query = (
        select(accounts.c.balance).where(accounts.c.customer_id == customer_id).with_for_update()
    )
    return (await session.execute(query)).scalar_one_or_none()


async def lock_balances(
    session: AsyncConnection, customer_ids: Iterable[str]
) -> dict[str, Decimal]:
    """The balances of the customers that exist, locked until commit, in customer-id order
    (so that two transactions charging overlapping customers wait instead of deadlocking)."""
    query = (
        select(accounts.c.customer_id, accounts.c.balance)
        .where(accounts.c.customer_id.in_(sorted(set(customer_ids))))
        .order_by(accounts.c.customer_id)
        .with_for_update()
    )
    return {row.customer_id: row.balance for row in await session.execute(query)}


_SET_BALANCE = (
    update(accounts)
    .where(accounts.c.customer_id == bindparam("b_customer_id"))
    .values(balance=bindparam("b_balance"), updated_at=func.now())
)


async def update_balances(session: AsyncConnection, balances: Mapping[str, Decimal]) -> None:
    """Write the new balances of existing accounts (locked by the caller), in one round trip."""
    if balances:
        rows = [{"b_customer_id": c, "b_balance": b} for c, b in balances.items()]
        await session.execute(_SET_BALANCE, rows)


async def read_balance(session: AsyncConnection, customer_id: str) -> Decimal | None:
    query = select(accounts.c.balance).where(accounts.c.customer_id == customer_id)
    return (await session.execute(query)).scalar_one_or_none()


async def set_balance(session: AsyncConnection, customer_id: str, balance: Decimal) -> None:
    statement = insert(accounts).values(customer_id=customer_id, balance=balance)
    statement = statement.on_conflict_do_update(
        index_elements=[accounts.c.customer_id],
        set_={"balance": statement.excluded.balance, "updated_at": func.now()},
    )
    await session.execute(statement)


async def get_payment(
    session: AsyncConnection, order_id: str, *, lock: bool = False
) -> Payment | None:
    query = select(payments).where(payments.c.order_id == order_id)
    if lock:
        query = query.with_for_update()
    row = (await session.execute(query)).mappings().one_or_none()
    if row is None:
        return None
    reason = row["reason"] or None
    return Payment(
        row["order_id"], row["customer_id"], row["amount"], PaymentStatus(row["status"]), reason
    )


async def payment_statuses(
    session: AsyncConnection, order_ids: Iterable[str]
) -> dict[str, PaymentStatus]:
    """The status of each of ``order_ids`` that has a payment."""
    query = select(payments.c.order_id, payments.c.status).where(
        payments.c.order_id.in_(sorted(set(order_ids)))
    )
    return {row.order_id: PaymentStatus(row.status) for row in await session.execute(query)}


_ADD_PAYMENTS = InsertManyUnlessPresent(
    payments, ("order_id", "customer_id", "amount", "status", "reason"), conflict="order_id"
)


async def add_payments(session: AsyncConnection, new: Sequence[Payment]) -> set[str]:
    """Record the payment decisions of ``new`` in one statement; the orders that had none."""
    return await _ADD_PAYMENTS(session, [_values(payment) for payment in new])


async def mark_refunded(session: AsyncConnection, order_id: str) -> None:
    await session.execute(
        update(payments)
        .where(payments.c.order_id == order_id)
        .values(status=PaymentStatus.REFUNDED.value, updated_at=func.now())
    )


def _values(payment: Payment) -> dict[str, object]:
    return {
        "order_id": payment.order_id,
        "customer_id": payment.customer_id,
        "amount": payment.amount,
        "status": payment.status.value,
        "reason": str(payment.reason) if payment.reason else None,
    }
