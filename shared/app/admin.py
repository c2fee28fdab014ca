"""Admin endpoints: the bearer-token guard and the failure-injection routes.

Admin endpoints change state on purpose (balances, stock, faults), so they are off unless an
admin token is configured: with no token they answer 404, as if they did not exist. Each
token has a name and a role (``PlatformSettings.named_admin_tokens``): a ``read-only`` one
may call the admin endpoints that only read (``GET``), an ``operator`` one every one. The
guard leaves the caller's name on the request (``caller``): what the endpoints that act
record in the audit trail (``shared.publishing.audit``), as faults injected and cleared are.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request, status

from shared.app.http import BODY_RESPONSES
from shared.consuming.faults import FaultRegistry, FaultSpec
from shared.publishing.audit import AuditTrail, AuditUnavailable
from shared.settings import READ_ONLY, AdminToken

__all__ = ["admin_guard", "audited", "caller", "faults_router"]

log = logging.getLogger(__name__)

Guard = Callable[..., Awaitable[None]]


READING = frozenset({"GET", "HEAD", "OPTIONS"})


def admin_guard(tokens: Sequence[AdminToken]) -> Guard:
    """A dependency that lets a request through only with ``Authorization: Bearer <token>``
    of one of ``tokens``, and a request that acts only with an operator's."""

    async def guard(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> None:
        if not tokens:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "admin endpoints are switched off")
        if authorization is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing Authorization: Bearer <SAGAKIT_ADMIN_TOKEN>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        scheme, _, given = authorization.partition(" ")
        # Every token compared, whichever matches: the time taken does not tell which.
        matches = [
            token
            for token in tokens
            if secrets.compare_digest(given.encode(), token.secret.get_secret_value().encode())
        ]
        if scheme.lower() != "bearer" or not matches:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "wrong admin token")
        token = matches[0]
        if token.role == READ_ONLY and request.method not in READING:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"the admin token {token.name!r} is read-only: it may look, not act",
            )
        request.state.admin_caller = token.name

    return guard


def caller(request: Request) -> str:
    """The name of the admin token the request came with (set by ``admin_guard``)."""
    return str(getattr(request.state, "admin_caller", "unknown"))


_PENDING: set[asyncio.Task[None]] = set()
"""Audit records being written (held so that they are not collected half way)."""


async def audited(
    audit: AuditTrail | None,
    request: Request,
    action: str,
    target: str,
    count: int,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Record an action done through an admin endpoint, in the background: the answer does
    not wait for Kafka (a fault is injected while a broker is down, on purpose). A record
    that cannot be written is logged as an error with what it said."""
    if audit is None:
        return
    who, at = caller(request), datetime.now(UTC)

    async def write() -> None:
        try:
            await audit.record(who, action, target, count, details, at=at)
        except AuditUnavailable as error:
            log.error("audit trail: %s (details: %s)", error, dict(details or {}))

    task = asyncio.create_task(write(), name=f"audit {action}")
    _PENDING.add(task)
    task.add_done_callback(_PENDING.discard)


def faults_router(registry: FaultRegistry, audit: AuditTrail | None = None) -> APIRouter:
    """``POST``/``GET``/``DELETE /faults``: failure injection for this process, each change
    recorded in ``audit``."""
    router = APIRouter(prefix="/faults", tags=["faults"])

    async def add_fault(spec: FaultSpec, request: Request) -> dict[str, Any]:
        """Inject a fault into this service's handlers."""
        try:
            fault = registry.add(spec)
        except ValueError as error:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(error)) from error
        described = fault.describe()
        await audited(audit, request, "fault.injected", str(spec.kind), 1, described)
        return described

    # The body is the registry's spec, its keys named as its system names them: a class made
    # at run time, which the annotation above cannot name.
    add_fault.__annotations__["spec"] = registry.spec_type
    router.post("", status_code=status.HTTP_201_CREATED, responses=BODY_RESPONSES)(add_fault)

    @router.get("")
    async def list_faults() -> list[dict[str, Any]]:
        """The faults still active, with how many times each may still fire."""
        return [fault.describe() for fault in registry.active()]

    @router.delete("", status_code=status.HTTP_204_NO_CONTENT)
    async def clear_faults(request: Request) -> None:
        """Remove every fault."""
        active = registry.active()
        registry.clear()
        if active:  # clearing none changed nothing (tests clear after each other)
            await audited(audit, request, "faults.cleared", "every fault", len(active))

    return router
