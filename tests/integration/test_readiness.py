"""``/readyz``: without Redis a service is degraded but ready; without its database it is not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis

from deploy.localstack.ports import free_ports
from shared.app.service import Service, create_app
from shared.consuming.faults import INFRASTRUCTURE_KINDS, FaultRegistry
from shared.settings import PlatformSettings
from shared.storage.db import make_engine
from tests.infra import Infrastructure


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """``host:port`` of a server that accepts connections and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    try:
        yield f"{host}:{port}"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def kafka_answers() -> None:
    """The Kafka probe of a service whose broker is fine (this test is about the others)."""


async def readiness(database_url: str, redis_url: str) -> httpx.Response:
    settings = PlatformSettings(service_name="readiness", database_url=database_url)
    service = Service(
        settings=settings,
        engine=make_engine(database_url),
        redis=Redis.from_url(redis_url, socket_connect_timeout=1),
        faults=FaultRegistry(INFRASTRUCTURE_KINDS),
        probes={"kafka": kafka_answers},
    )
    # No lifespan: the shell's components are not needed to answer /readyz.
    transport = httpx.ASGITransport(app=create_app(service))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
            return await http.get("/readyz")
    finally:
        await service.redis.aclose()
        await service.engine.dispose()


async def test_a_service_whose_dependencies_answer_is_ready(infra: Infrastructure) -> None:
    response = await readiness(await infra.create_database("ready"), infra.redis_url)

    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "redis": "ok", "kafka": "ok"},
    }


async def test_a_service_whose_redis_does_not_answer_is_degraded_but_ready(
    infra: Infrastructure, silent_server: str
) -> None:
    response = await readiness(await infra.create_database("degraded"), f"redis://{silent_server}")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["kafka"] == "ok"
    assert body["checks"]["redis"].startswith("TimeoutError")


async def test_a_service_whose_redis_refuses_connections_is_degraded_but_ready(
    infra: Infrastructure,
) -> None:
    [nobody] = free_ports(1)
    response = await readiness(
        await infra.create_database("refused"), f"redis://127.0.0.1:{nobody}"
    )

    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert "ConnectionError" in response.json()["checks"]["redis"]


async def test_a_service_whose_database_does_not_answer_is_not_ready(
    infra: Infrastructure,
) -> None:
    [nobody] = free_ports(1)
    database = f"postgresql+asyncpg://sagakit:sagakit@127.0.0.1:{nobody}/nothing"

    response = await readiness(database, infra.redis_url)

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["checks"]["database"] != "ok"
    assert body["checks"]["redis"] == "ok"
