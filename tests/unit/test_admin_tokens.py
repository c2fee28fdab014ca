"""Named admin tokens: SAGAKIT_ADMIN_TOKEN and SAGAKIT_ADMIN_TOKENS, and what the guard lets
through with each."""

from __future__ import annotations

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from pydantic import ValidationError

from shared.app.admin import admin_guard, caller
from shared.settings import OPERATOR, READ_ONLY, PlatformSettings

pytestmark = pytest.mark.unit


def settings(**given: str) -> PlatformSettings:
    return PlatformSettings(_env_file=None, **given)  # type: ignore[arg-type]


def test_the_single_token_is_an_operator_named_admin_and_named_ones_come_after() -> None:
    found = settings(
        admin_token="t0", admin_tokens="ann:operator:t1, rob:read-only:t:2"
    ).named_admin_tokens()

    assert [(t.name, t.role, t.secret.get_secret_value()) for t in found] == [
        ("admin", OPERATOR, "t0"),
        ("ann", OPERATOR, "t1"),
        ("rob", READ_ONLY, "t:2"),  # a token may hold a colon
    ]
    assert "t1" not in repr(found)  # secrets stay out of logs
    assert settings().named_admin_tokens() == []


@pytest.mark.parametrize(
    "text",
    ["ann:root:t1", "ann:operator:", "ann", ":operator:t1", "ann:operator:a,ann:read-only:b"],
)
def test_a_malformed_list_is_refused_at_start(text: str) -> None:
    with pytest.raises(ValidationError, match="SAGAKIT_ADMIN_TOKENS"):
        settings(admin_tokens=text)


def app_with(tokens: str) -> FastAPI:
    app = FastAPI()
    guard = [Depends(admin_guard(settings(admin_tokens=tokens).named_admin_tokens()))]

    @app.get("/look", dependencies=guard)
    async def look(request: Request) -> str:
        return caller(request)

    @app.post("/act", dependencies=guard)
    async def act(request: Request) -> str:
        return caller(request)

    return app


async def test_a_read_only_token_may_look_but_not_act_and_the_caller_is_named() -> None:
    transport = httpx.ASGITransport(app=app_with("ann:operator:tok-ann,rob:read-only:tok-rob"))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

        async def call(method: str, path: str, token: str | None) -> tuple[int, str]:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            response = await client.request(method, path, headers=headers)
            body = response.json()
            return response.status_code, body if response.status_code == 200 else body["detail"]

        assert await call("GET", "/look", "tok-rob") == (200, "rob")
        assert await call("POST", "/act", "tok-rob") == (
            403,
            "the admin token 'rob' is read-only: it may look, not act",
        )
        assert await call("POST", "/act", "tok-ann") == (200, "ann")
        assert await call("GET", "/look", "tok-nobody") == (403, "wrong admin token")
        assert (await call("GET", "/look", None))[0] == 401
