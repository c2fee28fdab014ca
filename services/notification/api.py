"""Notification's route: the notifications of a customer or an order, a page at a time."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from pydantic import BaseModel

from services.ids import MAX_CUSTOMER_ID_CHARS, MAX_ORDER_ID_CHARS
from services.notification import store
from services.notification.model import NotificationStatus
from shared.contracts.text import StorableStr
from shared.storage.db import UnitOfWorkFactory

__all__ = ["NotificationPublic", "admin_router", "router"]

MAX_PAGE = 500


class NotificationPublic(BaseModel):
    id: int
    event_id: str
    event_type: str
    order_id: str
    customer_id: str | None
    text: str
    details: dict[str, str]
    occurred_at: datetime
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def of(cls, notification: store.Notification) -> NotificationPublic:
        fields = {name: getattr(notification, name) for name in cls.model_fields}
        return cls.model_validate({**fields, "status": notification.status.value})


def router(units: UnitOfWorkFactory) -> APIRouter:
    api = APIRouter(prefix="/notifications", tags=["notifications"])

    @api.get("")
    async def list_notifications(
        request: Request,
        response: Response,
        customer_id: Annotated[
            StorableStr | None,
            Query(
                min_length=1, max_length=MAX_CUSTOMER_ID_CHARS, description="only this customer's"
            ),
        ] = None,
        order_id: Annotated[
            StorableStr | None,
            Query(min_length=1, max_length=MAX_ORDER_ID_CHARS, description="only this order's"),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        after: Annotated[
            int | None,
            Query(
                ge=1,
                le=2**63 - 1,
                description="the next page: the notifications listed after this id (the last "
                "of the previous page; the Link header rel=next gives the whole URL)",
            ),
        ] = None,
    ) -> list[NotificationPublic]:
        """Notifications, newest first, with where their delivery stands (``pending``,
        ``delivered``, ``dead``, ``recorded`` without a webhook, ``awaiting_customer``)."""
        async with units() as uow:
            found = await store.find_notifications(
                uow.session, customer_id=customer_id, order_id=order_id, limit=limit, after=after
            )
        response.headers["Cache-Control"] = "no-store"
        if len(found) == limit:
            following = request.url.include_query_params(after=found[-1].id)
            response.headers["Link"] = f'<{following}>; rel="next"'
        return [NotificationPublic.of(notification) for notification in found]

    return api


def admin_router(units: UnitOfWorkFactory) -> APIRouter:
    api = APIRouter(prefix="/notifications", tags=["notifications admin"])

    @api.post(
        "/{event_id}/deliver-again",
        responses={
            404: {"description": "No notification for this event"},
            409: {"description": "The notification is not dead: it is delivered or on its way"},
        },
    )
    async def deliver_again(
        event_id: Annotated[StorableStr, Path(min_length=1, max_length=64)],
    ) -> dict[str, str]:
        """A dead-lettered notification delivered again, its attempts counted from 0 (once
        the receiver is fixed)."""
        async with units() as uow:
            was = await store.deliver_again(uow.session, event_id)
            await uow.commit()
        if was is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no notification {event_id!r}")
        if was is not NotificationStatus.DEAD:
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"notification {event_id!r} is {was.value}, not dead"
            )
        return {"event_id": event_id, "status": NotificationStatus.PENDING.value}

    return api
