"""The service shell: what turns a service's parts into a running FastAPI application.

A service hands over its parts (database engine, Redis, the background components such as
the outbox relay and its consumer runners, its routers, its fault registry); the shell starts
them in order when the app starts, stops them in reverse order when it stops, and adds what
every service has: liveness, readiness, metrics, and the admin endpoints for failure
injection behind the admin token.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.admin import admin_guard, faults_router
from shared.faults import FaultRegistry
from shared.http import ADMIN_RESPONSES, BodySizeLimit
from shared.observability import Sample, render_metrics
from shared.settings import PlatformSettings

__all__ = ["Component", "Probe", "Service", "create_app"]

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[object]]
"""A readiness check: returns when the dependency answers, raises when it does not."""

PROBE_TIMEOUT_SECONDS = 2.0

DEGRADING_PROBES = frozenset({"redis"})
"""Checks whose failure leaves the service working, only slower: Redis is the idempotency
fast path, and the inbox table alone decides whether an event was processed."""


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
    faults: FaultRegistry
    components: Sequence[Component] = ()
    """Started in this order, stopped in reverse order."""
    routers: Sequence[APIRouter] = ()
    admin_routers: Sequence[APIRouter] = ()
    probes: Mapping[str, Probe] = field(default_factory=dict)
    """Readiness checks besides the database and Redis (Kafka, typically)."""
    description: str = ""

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

    def samples(self) -> Iterable[Sample]:
        labels = {"service": self.name, "instance": self.settings.instance_id}
        yield Sample("sagakit_up", 1, labels, kind="gauge", help="1 while the service runs")
        # A component may also report metrics (``metrics() -> Iterable[Sample]``) and the
        # partitions it owns (``partitions()``); the runtime of shared.platform does both.
        for component in self.components:
            report = getattr(component, "metrics", None)
            if report is not None:
                yield from report()

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

    app = FastAPI(
        title=f"sagakit {service.name}", description=service.description, lifespan=lifespan
    )
    app.add_middleware(BodySizeLimit)
    app.include_router(_health_router(service))
    for router in service.routers:
        app.include_router(router)
    guard = [Depends(admin_guard(service.settings.admin_token))]
    app.include_router(faults_router(service.faults), dependencies=guard, responses=ADMIN_RESPONSES)
    for router in service.admin_routers:
        app.include_router(router, dependencies=guard, responses=ADMIN_RESPONSES)
    return app


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

    @router.get("/readyz", responses={503: {"description": "Kafka or the database is down"}})
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

    @router.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> str:
        """Prometheus text format."""
        return render_metrics(service.samples())

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
