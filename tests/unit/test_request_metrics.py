"""The shared HTTP request metrics: by route template and status, failures included."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from eventschemas.metrics import HttpMetrics, RequestMetrics


async def item(request: Request) -> PlainTextResponse:
    if request.path_params["item_id"] == "boom":
        raise RuntimeError("a bug")
    return PlainTextResponse("ok")


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def test_requests_are_counted_and_timed_by_template_and_status(
    registry: CollectorRegistry,
) -> None:
    app = Starlette(routes=[Route("/items/{item_id}", item)])
    app.add_middleware(RequestMetrics, metrics=HttpMetrics("svc", registry))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        statuses = [
            (await client.get(path)).status_code
            for path in ("/items/a", "/items/b", "/items/boom", "/nowhere")
        ]

    assert statuses == [200, 200, 500, 404]
    route = {"method": "GET", "route": "/items/{item_id}"}
    assert value(registry, "svc_http_requests_total", **route, status="200") == 2
    assert value(registry, "svc_http_requests_total", **route, status="500") == 1
    assert (
        value(registry, "svc_http_requests_total", method="GET", route="unmatched", status="404")
        == 1
    )
    assert value(registry, "svc_http_request_duration_seconds_count", **route, status="200") == 2
    assert value(registry, "svc_http_request_duration_seconds_count", **route, status="500") == 1
