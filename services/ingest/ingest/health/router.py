"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from eventschemas.metrics import metrics_response
from ingest.deps import PublisherDep
from ingest.metrics import REGISTRY

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(publisher: PublisherDep) -> JSONResponse:
    """Ready only while the Kafka broker answers."""
    kafka_ok = await publisher.is_ready()
    body = {"status": "ready" if kafka_ok else "not_ready", "kafka": "ok" if kafka_ok else "down"}
    return JSONResponse(body, status_code=200 if kafka_ok else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return metrics_response(REGISTRY)
