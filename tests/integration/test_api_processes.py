"""Both APIs as several processes (uvicorn --workers 2, as `make up` runs them on 2 cores).

Real processes on the real database and broker. Each request goes over a new
connection, so the kernel hands them to either process: whichever answers,
the answer is the same, a write through one is read through the other at
once, and a revoked key is refused by every process within 5 s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.auth import create_key, revoke_key
from classifier.config import ClassifierSettings
from classifier.processing.batch import BatchProcessor, Delivery
from classifier.schemes.service import SchemeCache, ensure_active_scheme
from eventschemas.events import OrderPlaced
from ingest.config import IngestSettings
from tests.kafka_helpers import read_topic
from tests.processes import api_command, free_port, service_env, start, stop, wait_ready

pytestmark = pytest.mark.integration
PROCESSES = 2
REQUESTS = 40


@contextmanager
def serving(app: str, env: dict[str, str], log: Path) -> Iterator[str]:
    """The app under uvicorn with PROCESSES worker processes; yields its URL."""
    port = free_port()
    proc = start([*api_command(app, port), "--workers", str(PROCESSES)], env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url + "/healthz", proc, log)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) >= PROCESSES  # the worker processes (and a resource tracker)
        yield url
    finally:
        stop(proc)


async def fresh(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request on a connection of its own (so any process may take it)."""
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.request(method, url, **kwargs)


async def many(method: str, url: str, **kwargs: Any) -> list[httpx.Response]:
    return list(await asyncio.gather(*(fresh(method, url, **kwargs) for _ in range(REQUESTS))))


async def seed(sessions: async_sessionmaker[AsyncSession], customer: str) -> None:
    await ensure_active_scheme(sessions)
    now = datetime.now(UTC)
    events = [
        OrderPlaced(
            customer_id=customer,
            order_id=f"{customer}-{k}",
            amount=Decimal("250"),
            currency="USD",
            amount_base=Decimal("250"),
            base_currency="USD",
            placed_at=now - timedelta(days=10 * k + 1),
        )
        for k in range(3)
    ]
    await BatchProcessor(sessions, SchemeCache()).process(
        [Delivery(e.to_envelope("test"), e, partition=0) for e in events]
    )


async def test_two_api_processes_serve_consistent_answers(
    classifier_settings: ClassifierSettings,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    await seed(sessions, "cust-p")
    _, admin = await create_key(sessions, "admin", "admin")
    read_id, read = await create_key(sessions, "reader", "read")
    env = service_env(classifier_settings)  # the default key cache
    # Reads show time-moving values as of the read: one frozen "now" for both
    # processes makes their answers comparable byte for byte.
    env["CLASSIFIER_CLOCK_FROZEN_AT"] = datetime.now(UTC).isoformat()
    with serving("classifier.app:create_app", env, tmp_path / "api.log") as url:
        customer = f"{url}/v1/customers/cust-p"
        reads = await many("GET", customer, headers={"X-API-Key": read})
        assert {r.status_code for r in reads} == {200}
        assert len({r.content for r in reads}) == 1  # the same bytes from every process

        put = await fresh(
            "PUT",
            f"{customer}/overrides/abc_tier",
            json={"class": "A", "reason": "strategic"},
            headers={"X-API-Key": admin},
        )
        assert put.status_code == 200, put.text
        after = await many("GET", customer, headers={"X-API-Key": read})
        assert {r.json()["classes"]["abc_tier"]["class"] for r in after} == {"A"}
        assert {r.json()["classes"]["abc_tier"]["rule"] for r in after} == {"override"}

        assert await revoke_key(sessions, read_id)
        revoked = time.monotonic()
        while True:
            statuses = {
                r.status_code for r in await many("GET", customer, headers={"X-API-Key": read})
            }
            if statuses == {401}:
                break
            assert time.monotonic() - revoked <= 5.0, statuses
            await asyncio.sleep(0.2)


async def test_two_ingest_processes_accept_and_check_re_sends_alike(
    ingest_settings: IngestSettings, intake_key: str, tmp_path: Path
) -> None:
    classifier_like = ClassifierSettings(
        database_url=ingest_settings.database_url or "",
        kafka_bootstrap_servers=ingest_settings.kafka_bootstrap_servers,
        activity_topic=ingest_settings.activity_topic,
    )
    env = service_env(classifier_like)
    headers = {"Authorization": f"Bearer {intake_key}"}
    order = {"order_id": "MP-1", "email": "mp@example.cn", "amount": "10", "currency": "USD",
             "placed_at": "2026-11-01T10:00:00Z"}  # fmt: skip
    with serving("ingest.app:create_app", env, tmp_path / "ingest.log") as url:
        sent = await many("POST", f"{url}/v1/orders", json=order, headers=headers)
        changed = await many(
            "POST", f"{url}/v1/orders", json={**order, "amount": "11"}, headers=headers
        )

    assert {r.status_code for r in sent} == {202}
    assert len({(*r.json()["event_ids"], *r.json()["customer_ids"]) for r in sent}) == 1
    assert sent[0].json()["customer_ids"][0].startswith("id-e-")
    # Whichever process took it, the re-send with another amount is the same 409.
    assert {r.status_code for r in changed} == {409}
    records = await read_topic(
        ingest_settings.kafka_bootstrap_servers, ingest_settings.activity_topic, expected=REQUESTS
    )
    assert {r.key for r in records} == {sent[0].json()["customer_ids"][0].encode()}
