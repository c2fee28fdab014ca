"""Admin endpoints: the bearer-token guard and the failure-injection routes.

Admin endpoints change state on purpose (balances, stock, faults), so they are off unless an
admin token is configured: with no token they answer 404, as if they did not exist.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, status
from pydantic import SecretStr

from shared.app.http import BODY_RESPONSES
from shared.consuming.faults import FaultRegistry, FaultSpec

__all__ = ["admin_guard", "faults_router"]

Guard = Callable[..., Awaitable[None]]


def admin_guard(token: SecretStr | None) -> Guard:
    """A dependency that lets a request through only with ``Authorization: Bearer <token>``."""

    async def guard(authorization: Annotated[str | None, Header()] = None) -> None:
        if token is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "admin endpoints are switched off")
        if authorization is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing Authorization: Bearer <SAGAKIT_ADMIN_TOKEN>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        scheme, _, given = authorization.partition(" ")
        expected = token.get_secret_value().encode()
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.encode(), expected):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "wrong admin token")

    return guard


def faults_router(registry: FaultRegistry) -> APIRouter:
    """``POST``/``GET``/``DELETE /faults``: failure injection for this process."""
    router = APIRouter(prefix="/faults", tags=["faults"])

    async def add_fault(spec: FaultSpec) -> dict[str, Any]:
        """Inject a fault into this service's handlers."""
        try:
            fault = registry.add(spec)
        except ValueError as error:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(error)) from error
        return fault.describe()

    # The body is the registry's spec, its keys named as its system names them: a class made
    # at run time, which the annotation above cannot name.
    add_fault.__annotations__["spec"] = registry.spec_type
    router.post("", status_code=status.HTTP_201_CREATED, responses=BODY_RESPONSES)(add_fault)

    @router.get("")
    async def list_faults() -> list[dict[str, Any]]:
        """The faults still active, with how many times each may still fire."""
        return [fault.describe() for fault in registry.active()]

    @router.delete("", status_code=status.HTTP_204_NO_CONTENT)
    async def clear_faults() -> None:
        """Remove every fault."""
        registry.clear()

    return router
