from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from shared.app.http import BodySizeLimit


async def echo_size(request: Request) -> JSONResponse:
    return JSONResponse({"size": len(await request.body())})


def client(limit: int) -> httpx.AsyncClient:
    app = BodySizeLimit(Starlette(routes=[Route("/", echo_size, methods=["POST"])]), limit)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def chunks(count: int, size: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield b"x" * size


async def test_a_body_within_the_limit_reaches_the_app_whole() -> None:
    async with client(100) as http:
        response = await http.post("/", content=b"x" * 100)
    assert (response.status_code, response.json()) == (200, {"size": 100})


async def test_a_declared_length_over_the_limit_is_refused_with_413() -> None:
    async with client(100) as http:
        response = await http.post("/", content=b"x" * 101)
    assert response.status_code == 413


async def test_a_streamed_body_over_the_limit_is_refused_with_413() -> None:
    async with client(100) as http:
        response = await http.post("/", content=chunks(5, 30))
    assert response.status_code == 413


async def test_a_streamed_body_within_the_limit_reaches_the_app_whole() -> None:
    async with client(100) as http:
        response = await http.post("/", content=chunks(3, 30))
    assert (response.status_code, response.json()) == (200, {"size": 90})


class _Orig(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def failing_app(error: Exception) -> httpx.AsyncClient:
    from fastapi import FastAPI

    from shared.app.http import answer_database_errors

    app = FastAPI()
    answer_database_errors(app)

    @app.get("/")
    async def read() -> None:
        raise error

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_a_request_the_database_cannot_take_now_is_answered_503_with_retry_after() -> None:
    from sqlalchemy.exc import OperationalError

    too_many = OperationalError("SELECT", {}, _Orig("53300"))  # too many connections
    async with failing_app(too_many) as http:
        response = await http.get("/")

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert "database" in response.json()["detail"]


async def test_any_other_database_error_is_still_a_500() -> None:
    from sqlalchemy.exc import IntegrityError

    async with failing_app(IntegrityError("INSERT", {}, _Orig("23505"))) as http:
        response = await http.get("/")

    assert response.status_code == 500
