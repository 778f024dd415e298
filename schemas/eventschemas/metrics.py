"""Prometheus plumbing both services share: a registry per process and HTTP request metrics.

Each process (ingest, classifier API, classifier worker) registers its families
in a registry of its own and serves only that one, so no process exports
another's families (which would always read 0 there).
"""

from __future__ import annotations

import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_LABELS = ("method", "route", "status")
HTTP_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def process_registry() -> CollectorRegistry:
    """A registry for one process's families, with the process, platform and GC collectors."""
    registry = CollectorRegistry()
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    return registry


def metrics_response(registry: CollectorRegistry) -> Response:
    """The text exposition of `registry`, for a /metrics endpoint."""
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class HttpMetrics:
    """The request families of one HTTP service, labelled by method, route template, status."""

    def __init__(self, prefix: str, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            f"{prefix}_http_requests_total",
            "HTTP requests answered, by route template and status",
            HTTP_LABELS,
            registry=registry,
        )
        self.duration = Histogram(
            f"{prefix}_http_request_duration_seconds",
            "Time from the request to the last byte of the answer, by route template and status",
            HTTP_LABELS,
            buckets=HTTP_SECONDS_BUCKETS,
            registry=registry,
        )


def route_template(scope: Scope) -> str:
    """The matched route's template (never the raw path, which may carry ids), or `unmatched`."""
    route = scope.get("route")
    return str(getattr(route, "path", "unmatched"))


class RequestMetrics:
    """ASGI middleware: count answered requests when the answer starts, time them to its end."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                self._count(scope, status)
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            if not status:  # the app raised before answering: the client gets a 500
                status = 500
                self._count(scope, status)
            self.metrics.duration.labels(
                scope["method"], route_template(scope), str(status)
            ).observe(time.perf_counter() - started)

    def _count(self, scope: Scope, status: int) -> None:
        self.metrics.requests.labels(scope["method"], route_template(scope), str(status)).inc()
