"""HTTP guard rails every service gets from the shell, and the error answers routes document.

Every status a route can answer is in its OpenAPI document (the fuzz tests hold the services
to it): FastAPI adds 200 and, for a route with parameters, 422; the rest come from here.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from fastapi import FastAPI, Request
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.consuming.failures import Failure, classify

__all__ = [
    "ADMIN_RESPONSES",
    "BODY_RESPONSES",
    "MAX_BODY_BYTES",
    "UNAVAILABLE_RESPONSES",
    "BodySizeLimit",
    "answer_database_errors",
    "not_found",
]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_000_000

Responses = dict[int | str, dict[str, Any]]

BODY_RESPONSES: Final[Responses] = {
    # FastAPI's own answer to a body its JSON parser gives up on with something other than a
    # syntax error (which is a 422): bytes that are not UTF-8, or nesting too deep to parse.
    400: {"description": "The body could not be parsed (not UTF-8, or nested too deeply)"},
    413: {"description": f"The body is larger than {MAX_BODY_BYTES} bytes"},
}
"""The answers of every route that reads a request body, besides 422."""

ADMIN_RESPONSES: Final[Responses] = {
    401: {"description": "No Authorization: Bearer <SAGAKIT_ADMIN_TOKEN> header"},
    403: {"description": "A wrong admin token"},
    404: {"description": "Admin endpoints are switched off (no SAGAKIT_ADMIN_TOKEN is set)"},
}
"""The answers of the admin guard (``shared.app.admin``), on every admin route."""

UNAVAILABLE_RESPONSES: Final[Responses] = {
    503: {
        "description": "The database cannot take the request now (down, restarting, out of "
        "connections): nothing was done, retry after the Retry-After header's seconds"
    },
}
"""Every route's answer when its database is unavailable (``answer_database_errors``)."""


def answer_database_errors(app: FastAPI) -> None:
    """Answer a request whose database is unavailable (``shared.consuming.failures``: refused
    or lost connections, no connection free, a server shutting down or out of connections)
    with 503 and ``Retry-After``: the caller may send it again, as the consumers wait such a
    database out. Any other database error stays a 500, logged with its traceback."""

    async def answer(request: Request, error: Exception) -> JSONResponse:
        if classify(error) is Failure.unavailable:
            log.warning("%s %s: database unavailable (%r)", request.method, request.url.path, error)
            return JSONResponse(
                {"detail": "the database is unavailable: retry later"},
                status_code=503,
                headers={"Retry-After": "1"},
            )
        log.error("%s %s failed", request.method, request.url.path, exc_info=error)
        return JSONResponse({"detail": "Internal Server Error"}, status_code=500)

    app.add_exception_handler(DBAPIError, answer)
    app.add_exception_handler(PoolTimeout, answer)


def not_found(what: str) -> Responses:
    """The 404 of a route that reads one thing: ``not_found("order")``."""
    return {404: {"description": f"No such {what}"}}


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with 413, before anyone parses them.

    A declared ``Content-Length`` is checked at once. A body sent without one (chunked) is
    read up to the limit first and handed on only when it fits, so neither way gets a huge
    body into memory, and both get the same answer.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        messages = await self._read_within_limit(receive)
        if messages is None:
            await self._refuse(scope, receive, send)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _read_within_limit(self, receive: Receive) -> list[Message] | None:
        """The request's body messages, or None once they pass the limit."""
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages  # the client went away: let the app see it
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return None
            if not message.get("more_body", False):
                return messages

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {"detail": f"request body larger than {self.max_bytes} bytes"}, status_code=413
        )
        await response(scope, receive, send)
