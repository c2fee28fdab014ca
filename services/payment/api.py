"""Payment's admin routes: balances to set and read, payments to look at."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict

from services.ids import CustomerIdPath, OrderIdPath
from services.payment import store
from shared.app.http import BODY_RESPONSES, not_found
from shared.contracts.money import MoneyStr
from shared.storage.db import UnitOfWorkFactory

__all__ = ["admin_router"]


class AccountUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    balance: MoneyStr


class AccountPublic(BaseModel):
    customer_id: str
    balance: MoneyStr


class PaymentPublic(BaseModel):
    order_id: str
    status: str
    amount: MoneyStr
    reason: str | None = None


def admin_router(units: UnitOfWorkFactory) -> APIRouter:
    router = APIRouter(tags=["payment admin"])

    @router.put("/accounts/{customer_id}", responses=BODY_RESPONSES)
    async def set_account(customer_id: CustomerIdPath, body: AccountUpdate) -> AccountPublic:
        """Set a customer's balance (creates the account when it is new)."""
        async with units() as uow:
            await store.set_balance(uow.session, customer_id, body.balance)
            await uow.commit()
        return AccountPublic(customer_id=customer_id, balance=body.balance)

    @router.get("/accounts/{customer_id}", responses=not_found("account"))
    async def get_account(customer_id: CustomerIdPath) -> AccountPublic:
        """A customer's balance."""
        async with units() as uow:
            balance = await store.read_balance(uow.session, customer_id)
        if balance is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no account {customer_id!r}")
        return AccountPublic(customer_id=customer_id, balance=balance)

    @router.get("/payments/{order_id}", responses=not_found("payment"))
    async def get_payment(order_id: OrderIdPath) -> PaymentPublic:
        """An order's payment: CHARGED, DECLINED or REFUNDED."""
        async with units() as uow:
            payment = await store.get_payment(uow.session, order_id)
        if payment is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no payment for order {order_id!r}")
        reason = payment.reason
        return PaymentPublic(
            order_id=order_id, status=payment.status.value, amount=payment.amount, reason=reason
        )

    return router
