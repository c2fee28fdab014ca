"""The bulk actions over HTTP, behind the admin token: the dead letters by group, a bulk
replay, a bulk cancel of the stuck sagas, and their progress (``services.order.bulk``).

A bulk action is asked for twice: ``GET`` answers the count and the sagas (a dry run: it
changes nothing, so a read-only token may ask); then ``POST`` with the same selection and the
count the operator confirmed (``expected``) starts it, or answers 409 when the selection no
longer holds that count. ``sagakit dlq groups | replay-group``, ``sagakit sagas cancel-stuck`` and
the explorer's grouped dead-letters page all ask through here.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.order import bulk
from services.order.explorer.routes import Explorer
from shared.app.admin import audited
from shared.app.http import BODY_RESPONSES

__all__ = ["router"]

START_RESPONSES: dict[int | str, dict[str, Any]] = {
    409: {"description": "The selection no longer holds the count confirmed (expected)"},
    503: {"description": "The dead-letter topics cannot be read"},
}


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    topic: str = Field(min_length=1, description="The dead-letter topic (full name).")
    consumer_group: str | None = Field(default=None, min_length=1)
    error_type: str | None = Field(default=None, min_length=1)
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None
    expected: int | None = Field(default=None, ge=0, description="The count confirmed.")

    def selection(self) -> bulk.ReplaySelection:
        return bulk.ReplaySelection(
            self.topic, self.consumer_group, self.error_type, self.since, self.until
        )


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expected: int | None = Field(default=None, ge=0, description="The count confirmed.")


def router(explorer: Explorer) -> APIRouter:
    routes = APIRouter(tags=["bulk actions"])

    async def refreshed() -> None:
        """The dead letters Kafka holds now, indexed: a selection sees them all."""
        try:
            await explorer.dead_letters.refresh()
        except Exception as error:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                f"cannot read the dead-letter topics: {type(error).__name__}: {error}",
            ) from error

    @routes.get("/dead-letters/groups", responses={503: START_RESPONSES[503]})
    async def dead_letter_groups() -> list[dict[str, Any]]:
        """The dead letters by topic, consumer group and error type: how many, of how many
        sagas, first and last seen; the largest group first."""
        await refreshed()
        async with explorer.units() as uow:
            groups = await bulk.dead_letter_groups(uow.session)
        return [asdict(group) for group in groups]

    def dead_letter_topic(topic: str) -> None:
        if topic not in explorer.dead_letters.topics:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_ENTITY, f"{topic!r} is not a dead-letter topic"
            )

    @routes.get("/bulk/replay", responses={**BODY_RESPONSES, 503: START_RESPONSES[503]})
    async def preview_replay(query: Annotated[ReplayRequest, Query()]) -> dict[str, Any]:
        """The dry run of a replay: how many dead letters, of which sagas, and how many are
        older than the inboxes' memory (refused); nothing changes."""
        dead_letter_topic(query.topic)
        await refreshed()
        async with explorer.units() as uow:
            preview = await bulk.preview_replay(
                uow.session, query.selection(), explorer.inbox_memory
            )
        return asdict(preview)

    @routes.post("/bulk/replay", responses={**BODY_RESPONSES, **START_RESPONSES})
    async def replay(body: ReplayRequest, request: Request) -> dict[str, Any]:
        """Start the replay of what the selection holds: each dead letter sent back paced,
        for the group that dead-lettered it."""
        dead_letter_topic(body.topic)
        await refreshed()
        selection = body.selection()
        async with explorer.units() as uow:
            started = await _start(
                bulk.start_replay(uow.session, selection, expected=body.expected)
            )
            await uow.commit()
        details = {"action_id": started["action_id"], **selection.as_json()}
        await audited(
            explorer.audit, request, "bulk.replay.started", body.topic, started["total"], details
        )
        return started

    @routes.get("/bulk/cancel-stuck", responses={503: START_RESPONSES[503]})
    async def preview_cancel() -> dict[str, Any]:
        """The dry run of a cancel: how many stuck sagas a cancel can still end, and which."""
        await refreshed()
        criteria = await explorer.finder.criteria()
        async with explorer.units() as uow:
            return asdict(await bulk.preview_cancel(uow.session, criteria))

    @routes.post("/bulk/cancel-stuck", responses={**BODY_RESPONSES, **START_RESPONSES})
    async def cancel_stuck(body: CancelRequest, request: Request) -> dict[str, Any]:
        """Start the cancel of the stuck sagas: each still stuck when its turn comes cancelled
        as timed out, paced, and compensated."""
        await refreshed()
        criteria = await explorer.finder.criteria()
        async with explorer.units() as uow:
            started = await _start(bulk.start_cancel(uow.session, criteria, expected=body.expected))
            await uow.commit()
        await audited(
            explorer.audit,
            request,
            "bulk.cancel_stuck.started",
            "the stuck sagas",
            started["total"],
            {"action_id": started["action_id"]},
        )
        return started

    @routes.get("/bulk")
    async def list_actions() -> list[dict[str, Any]]:
        """The newest bulk actions, with their progress."""
        async with explorer.units() as uow:
            return [_progress(action) for action in await bulk.list_actions(uow.session)]

    @routes.get("/bulk/{action_id}", responses={404: {"description": "No such bulk action"}})
    async def show_action(action_id: str) -> dict[str, Any]:
        """One bulk action: what it selected, how many done, by outcome."""
        async with explorer.units() as uow:
            found = await bulk.action_progress(uow.session, action_id)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no bulk action {action_id!r}")
        return _progress(found)

    return routes


async def _start(starting: Awaitable[tuple[str, int]]) -> dict[str, Any]:
    try:
        action_id, total = await starting
    except bulk.SelectionChanged as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from error
    return {"action_id": action_id, "total": total}


def _progress(action: bulk.ActionProgress) -> dict[str, Any]:
    shown = asdict(action)
    shown["done"] = action.done
    for key in ("created_at", "finished_at"):
        moment = shown[key]
        shown[key] = moment.isoformat() if isinstance(moment, datetime) else None
    return shown
