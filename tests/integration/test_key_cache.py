"""API keys are checked from memory, and a revoked key is refused within 5 s.

Real PostgreSQL holds the keys. Right after a revocation the key still works
(no request asks the database about its key), and with the default settings
both APIs refuse it within 5 s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.app import create_app as create_api
from classifier.auth import create_key, revoke_key
from classifier.config import ClassifierSettings
from ingest.app import create_app as create_ingest
from ingest.config import IngestSettings

pytestmark = pytest.mark.integration
REVOCATION_BOUND_S = 5.0


async def seconds_until_refused(
    sessions: async_sessionmaker[AsyncSession],
    key_id: str,
    request: Callable[[int], Awaitable[httpx.Response]],
) -> tuple[float, int]:
    """Revoke the key, then poll until a request is refused; (seconds, accepted meanwhile)."""
    assert (await request(0)).status_code < 300  # verified once: cached from now on
    assert await revoke_key(sessions, key_id)
    revoked = time.monotonic()
    for attempt in range(1, 200):
        response = await request(attempt)
        if response.status_code == 401:
            return time.monotonic() - revoked, attempt - 1
        assert response.status_code < 300, response.text
        await asyncio.sleep(0.1)
    raise AssertionError("the revoked key was never refused")


async def test_ingest_refuses_a_revoked_intake_key_within_5_s(
    ingest_settings: IngestSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    key_id, key = await create_key(sessions, "shop", ["orders:write"], rate_per_second=0)
    app = create_ingest(ingest_settings)  # the default key cache
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://ingest",
            headers={"Authorization": f"Bearer {key}"},
        ) as client:

            async def post(i: int) -> httpx.Response:
                order = {"order_id": f"R-{i}", "customer_id": "c-1", "amount": "1",
                         "currency": "USD", "placed_at": "2026-11-01T10:00:00Z"}  # fmt: skip
                return await client.post("/v1/orders", json=order)

            seconds, accepted = await seconds_until_refused(sessions, key_id, post)

    assert seconds <= REVOCATION_BOUND_S
    assert accepted >= 1  # the key was checked from memory, not the database, meanwhile


async def test_the_api_refuses_a_revoked_read_key_within_5_s(
    classifier_settings: ClassifierSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    key_id, key = await create_key(sessions, "dialler", "read")
    app = create_api(classifier_settings)  # the default key cache
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api", headers={"X-API-Key": key}
        ) as client:

            async def get(_: int) -> httpx.Response:
                return await client.get("/v1/classes/counts")

            seconds, accepted = await seconds_until_refused(sessions, key_id, get)

    assert seconds <= REVOCATION_BOUND_S
    assert accepted >= 1
