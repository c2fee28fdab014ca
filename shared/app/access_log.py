"""Every HTTP request: one access log line, one observation of its duration, one span.

A pure ASGI middleware (no ``BaseHTTPMiddleware``: it would copy each response body through
a stream). The duration is labelled with the route's template (``/orders/{order_id}``), not
the path, so that the histogram has one series per route and not one per order. A request
continues the trace its ``traceparent`` header names, or starts one, and every event the
request emits belongs to its span (``shared.observability.tracing``): that is where an order's trace
begins. Probes and scrapes (``QUIET_PATHS``) are logged at DEBUG and traced not at all.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.observability.metrics import DURATION_BUCKETS
from shared.observability.tracing import TRACEPARENT, TraceParent, active_span, start_span

__all__ = ["QUIET_PATHS", "AccessLog", "request_durations"]

log = logging.getLogger("sagakit.access")

QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_TRACEPARENT = TRACEPARENT.encode()


def request_durations(registry: CollectorRegistry) -> Histogram:
    """The HTTP request duration histogram, registered on a service's ``registry``."""
    return Histogram(
        "sagakit_http_request_duration_seconds",
        "Time from a request's arrival to the end of its response",
        labelnames=("method", "route", "status"),
        buckets=DURATION_BUCKETS,
        registry=registry,
    )


class AccessLog:
    """Logs, times and traces every HTTP request of ``app``."""

    def __init__(self, app: ASGIApp, durations: Histogram) -> None:
        self.app = app
        self.durations = durations

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method, path = scope["method"], scope["path"]
        status = 500  # unless the app starts a response
        quiet = path in QUIET_PATHS

        async def respond(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        span = None
        if not quiet:
            parent = TraceParent.parse(dict(scope["headers"]).get(_TRACEPARENT))
            span = start_span(
                f"HTTP {method}",
                parent,
                "server",
                {"http.request.method": method, "url.path": path},
            )
        failure: BaseException | None = None
        try:
            if span is None:
                await self.app(scope, receive, respond)
            else:
                with active_span(span):
                    await self.app(scope, receive, respond)
        except BaseException as error:
            failure = error
            raise
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.durations.labels(method, route, str(status)).observe(elapsed)
            if span is not None:
                span.end(failure)
            log.log(
                logging.DEBUG if quiet else logging.INFO,
                '"%s %s" %d %.1f ms',
                method,
                path,
                status,
                elapsed * 1000,
                extra={
                    "http_method": method,
                    "http_path": path,
                    "http_route": route,
                    "http_status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "client": (scope.get("client") or ("-",))[0],
                    **({"trace_id": span.context.trace_id} if span is not None else {}),
                },
            )
