"""The service shell: what turns a service's parts into a running FastAPI application.

A service hands over its parts (database engine, Redis, the background components such as
the outbox relay and its consumer runners, its routers, its fault registry); the shell starts
them in order when the app starts, stops them in reverse order when it stops, and adds what
every service has: liveness, readiness, metrics, the event contracts (``/asyncapi.yaml``),
and the admin endpoints for failure injection behind the admin token.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Response
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from prometheus_client import ProcessCollector as _ProcessCollector
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.middleware import Middleware

from shared.app.access_log import AccessLog, request_durations
from shared.app.admin import admin_guard, faults_router
from shared.app.http import (
    ADMIN_RESPONSES,
    UNAVAILABLE_RESPONSES,
    BodySizeLimit,
    answer_database_errors,
)
from shared.consuming.faults import FaultRegistry
from shared.observability.metrics import Metric, gauge, render
from shared.publishing.audit import AuditTrail
from shared.settings import PlatformSettings

__all__ = ["Component", "Probe", "Service", "create_app"]

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[object]]
"""A readiness check: returns when the dependency answers, raises when it does not."""

PROBE_TIMEOUT_SECONDS = 2.0
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""What ``prometheus_client.generate_latest`` writes: the classic text format."""


def _service_registry() -> CollectorRegistry:
    # One registry per service, never prometheus_client's global one: tests build several
    # services in one process. The process collector reads /proc at scrape time only.
    registry = CollectorRegistry(auto_describe=True)
    _ProcessCollector(registry=registry)
    return registry


DEGRADING_PROBES = frozenset({"redis"})
"""Checks whose failure leaves the service working, only slower: Redis is the idempotency
fast path, and the inbox table alone decides whether an event was processed."""

ASYNCAPI_DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"
"""The event contracts, generated from the code by ``python -m services.asyncapi``."""


class Component(Protocol):
    """Something that runs in the background for the service's lifetime."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class Service:
    """The parts of one service, wired by its ``bootstrap``."""

    settings: PlatformSettings
    engine: AsyncEngine
    redis: Redis
    faults: FaultRegistry | None
    """None when failure injection is switched off: then there is no ``/faults``."""
    components: Sequence[Component] = ()
    """Started in this order, stopped in reverse order."""
    routers: Sequence[APIRouter] = ()
    admin_routers: Sequence[APIRouter] = ()
    middleware: Sequence[Middleware] = ()
    """ASGI middleware of its own, outermost first, inside the platform's (the access log,
    the body size limit) and in front of routing."""
    probes: Mapping[str, Probe] = field(default_factory=dict)
    """Readiness checks besides the database and Redis (Kafka, typically)."""
    description: str = ""
    registry: CollectorRegistry = field(default_factory=_service_registry)
    """This service's metrics objects (the HTTP request durations, the process's)."""

    @property
    def name(self) -> str:
        return self.settings.service_name

    def all_probes(self) -> dict[str, Probe]:
        return {"database": self._ping_database, "redis": self._ping_redis, **self.probes}

    async def _ping_database(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def _ping_redis(self) -> None:
        await self.redis.ping()

    async def metric_families(self) -> list[Metric]:
        """Every family ``/metrics`` shows but the registry's, read now."""
        families: list[Metric] = [gauge("sagakit_up", "1 while the service runs", (), {(): 1})]
        # A component may also report metrics (``metrics()``, returning metric families or a
        # coroutine of them, read at each scrape) and the partitions it owns
        # (``partitions()``); the runtime of shared.app.platform does both.
        for component in self.components:
            report = getattr(component, "metrics", None)
            if report is None:
                continue
            try:
                reported = report()
                families.extend(await reported if inspect.isawaitable(reported) else reported)
            except Exception as error:  # the other families are still worth a scrape
                log.warning("metrics of %r not read: %r", component, error)
        return families

    async def exposition(self) -> bytes:
        """The Prometheus text format of this service's metrics, each sample labelled with
        the service and the instance."""
        labels = {"service": self.name, "instance": self.settings.instance_id}
        return render(await self.metric_families(), labels, self.registry)

    async def start(self) -> None:
        for component in self.components:
            await component.start()

    async def stop(self) -> None:
        for component in reversed(self.components):
            try:
                await component.stop()
            except Exception:  # keep stopping the rest: a clean shutdown matters more
                log.exception("stopping %r failed", component)
        await self.redis.aclose()
        await self.engine.dispose()


def create_app(service: Service) -> FastAPI:
    """A FastAPI app that runs ``service`` for as long as the app lives."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        log.info("%s ready", service.name)
        try:
            yield
        finally:
            await service.stop()
            log.info("%s stopped", service.name)

    description = (
        f"{service.description}\n\nThe events it sends and receives, and every other "
        "service's: [AsyncAPI 3 document](/asyncapi.yaml)."
    ).strip()
    app = FastAPI(
        title=f"sagakit {service.name}",
        description=description,
        lifespan=lifespan,
        responses=UNAVAILABLE_RESPONSES,
    )
    answer_database_errors(app)
    for middleware in reversed(service.middleware):  # each one added wraps the ones before
        app.add_middleware(middleware.cls, *middleware.args, **middleware.kwargs)
    app.add_middleware(BodySizeLimit)
    app.add_middleware(AccessLog, durations=request_durations(service.registry))
    app.include_router(_health_router(service))
    app.include_router(contracts_router())
    for router in service.routers:
        app.include_router(router)
    guard = [Depends(admin_guard(service.settings.named_admin_tokens()))]
    if service.faults is not None:
        audit = AuditTrail(service.settings, _recorder(service.settings))
        app.include_router(
            faults_router(service.faults, audit), dependencies=guard, responses=ADMIN_RESPONSES
        )
    for router in service.admin_routers:
        app.include_router(router, dependencies=guard, responses=ADMIN_RESPONSES)
    return app


def _recorder(settings: PlatformSettings) -> str:
    """What the audit trail names as the recorder of an action: the service's instance."""
    return f"{settings.service_name}/{settings.instance_id}"


def _health_router(service: Service) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz() -> dict[str, object]:
        """Liveness: the process answers. Also which partitions it consumes right now."""
        partitions: dict[str, object] = {}
        for component in service.components:
            report = getattr(component, "partitions", None)
            if report is not None:
                partitions |= report()
        return {
            "status": "ok",
            "service": service.name,
            "instance": service.settings.instance_id,
            "partitions": partitions,
        }

    @router.get(
        "/readyz",
        responses={
            503: {
                "description": "Kafka or the database is down, or a consumer group is not consuming"
            }
        },
    )
    async def readyz() -> JSONResponse:
        """Readiness: Kafka and the database answer; without Redis the service is degraded."""
        checks = await _run_probes(service.all_probes())
        failing = {name for name, result in checks.items() if result != "ok"}
        if not failing:
            state, code = "ready", 200
        elif failing <= DEGRADING_PROBES:
            state, code = "degraded", 200
        else:
            state, code = "not ready", 503
        return JSONResponse({"status": state, "checks": checks}, status_code=code)

    @router.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        """Prometheus text format."""
        return Response(await service.exposition(), media_type=METRICS_CONTENT_TYPE)

    return router


def contracts_router(document: Path = ASYNCAPI_DOCUMENT) -> APIRouter:
    """``GET /asyncapi.yaml``: the AsyncAPI document of every topic, message and operation."""
    router = APIRouter(tags=["contracts"])

    @router.get("/asyncapi.yaml", response_class=Response)
    def asyncapi() -> Response:  # sync: FastAPI reads the file in its thread pool
        """The event contracts (AsyncAPI 3): topics, keys, headers, payload schemas."""
        try:
            content = document.read_bytes()
        except FileNotFoundError:
            # An install without the repository's docs/ (a wheel): say where it comes from.
            raise HTTPException(
                404, f"{document} is not installed: run python -m services.asyncapi"
            ) from None
        return Response(content, media_type="application/yaml")

    return router


async def _run_probes(probes: Mapping[str, Probe]) -> dict[str, str]:
    async def run(probe: Probe) -> str:
        try:
            await asyncio.wait_for(probe(), PROBE_TIMEOUT_SECONDS)
        except Exception as error:  # a probe's failure is its answer, never a 500
            return f"{type(error).__name__}: {error}"[:200]
        return "ok"

    results = await asyncio.gather(*(run(probe) for probe in probes.values()))
    return dict(zip(probes, results, strict=True))
