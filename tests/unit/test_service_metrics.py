"""The shell's /metrics and access log, driven in process (no lifespan: nothing connects)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from shared.app.service import Service, create_app
from shared.consuming.faults import FaultRegistry
from shared.observability.metrics import Metric, counter
from shared.observability.tracing import TraceParent
from shared.settings import PlatformSettings
from shared.storage.db import make_engine

Samples = dict[str, list[tuple[dict[str, str], float]]]


class Reporting:
    """A component that only reports ``families`` (or fails to, with ``error``)."""

    def __init__(self, families: list[Metric], error: Exception | None = None) -> None:
        self.families, self.error = families, error

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def metrics(self) -> list[Metric]:  # a plain method is read as well as a coroutine
        if self.error is not None:
            raise self.error
        return self.families


class ReportingLater(Reporting):
    async def metrics(self) -> list[Metric]:  # type: ignore[override]
        return super().metrics()


def orders() -> APIRouter:
    router = APIRouter()

    @router.get("/orders/{order_id}")
    async def read(order_id: str) -> dict[str, str]:
        return {"order_id": order_id}

    return router


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    service = Service(
        settings=PlatformSettings(service_name="order", instance_id="order-1"),
        # Clients only: nothing connects unless the app's lifespan starts the service.
        engine=make_engine("postgresql+asyncpg://u:p@127.0.0.1:9/none"),
        redis=Redis.from_url("redis://127.0.0.1:9/0"),
        faults=FaultRegistry(frozenset()),
        routers=[orders()],
        components=[
            Reporting([], ConnectionRefusedError("the database is away")),
            Reporting([counter("sagakit_large", "a large count", (), {(): 10_000_001})]),
            ReportingLater([counter("sagakit_later", "read by a coroutine", (), {(): 2})]),
        ],
    )
    yield service
    await service.redis.aclose()
    await service.engine.dispose()


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def client_of(service: Service) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(service))
    return httpx.AsyncClient(transport=transport, base_url="http://order")


async def test_metrics_are_labelled_exact_and_survive_a_failing_source(service: Service) -> None:
    async with client_of(service) as client:
        samples = await scrape(client)

    labels = {"service": "order", "instance": "order-1"}
    assert samples["sagakit_up"] == [(labels, 1)]
    assert samples["sagakit_large_total"] == [(labels, 10_000_001)]
    assert samples["sagakit_later_total"] == [(labels, 2)]
    assert samples["process_cpu_seconds_total"][0][0] == labels


async def test_requests_are_timed_by_route_template_and_logged(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    caller = TraceParent.new_trace()
    with caplog.at_level(logging.DEBUG, logger="sagakit.access"):
        async with client_of(service) as client:
            for order_id in ("o-1", "o-2"):
                response = await client.get(
                    f"/orders/{order_id}", headers={"traceparent": str(caller)}
                )
                assert response.status_code == 200
            assert (await client.get("/nowhere")).status_code == 404
            samples = await scrape(client)

    durations = {
        (labels["method"], labels["route"], labels["status"]): value
        for labels, value in samples["sagakit_http_request_duration_seconds_count"]
    }
    assert durations[("GET", "/orders/{order_id}", "200")] == 2
    assert durations[("GET", "unmatched", "404")] == 1
    lines = [r for r in caplog.records if r.name == "sagakit.access"]
    read = [r for r in lines if r.__dict__["http_path"] == "/orders/o-1"]
    assert len(read) == 1 and read[0].levelno == logging.INFO
    assert read[0].__dict__["http_route"] == "/orders/{order_id}"
    assert read[0].__dict__["http_status"] == 200
    assert read[0].__dict__["trace_id"] == caller.trace_id  # the caller's trace, continued
    scrapes = [r for r in lines if r.__dict__["http_path"] == "/metrics"]
    assert scrapes and all(r.levelno == logging.DEBUG for r in scrapes)
