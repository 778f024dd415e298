"""Liveness, readiness (PostgreSQL and Kafka reachable) and metrics."""

from __future__ import annotations

import asyncio
from typing import cast

from aiokafka import AIOKafkaClient
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from classifier.db import SessionDep
from classifier.metrics import API_REGISTRY
from eventschemas.metrics import metrics_response

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


async def _kafka_ok(request: Request) -> bool:
    client = cast(AIOKafkaClient, request.app.state.kafka_client)
    try:
        async with asyncio.timeout(2):
            await client.fetch_all_metadata()
    except Exception:
        return False
    return True


async def _db_ok(session: SessionDep) -> bool:
    try:
        async with asyncio.timeout(2):
            await session.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


@router.get("/readyz")
async def readyz(request: Request, session: SessionDep) -> JSONResponse:
    """Ready only while PostgreSQL and Kafka both answer."""
    db, kafka = await _db_ok(session), await _kafka_ok(request)
    body = {
        "status": "ready" if db and kafka else "not_ready",
        "postgres": "ok" if db else "down",
        "kafka": "ok" if kafka else "down",
    }
    return JSONResponse(body, status_code=200 if db and kafka else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return metrics_response(API_REGISTRY)
