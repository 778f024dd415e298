"""The broker goes away and comes back: 503 while it is gone, nothing lost or doubled after.

Runs a Kafka broker of its own (same scripts/stack.sh, own state dir and port)
so stopping it does not disturb the shared one.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.config import ClassifierSettings
from classifier.models import Customer, ProcessedEvent
from classifier.topics import ensure_topics
from classifier.worker import run_worker
from ingest.app import create_app
from ingest.config import IngestSettings
from tests.kafka_helpers import eventually, read_topic

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

ORDER = {
    "order_id": "SO-OUT-1",
    "customer_id": "cust-outage",
    "amount": "80",
    "currency": "USD",
    "placed_at": "2026-11-01T10:00:00+00:00",
}


def free_port_pair() -> int:
    """A port whose successor (the controller port) is free too."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair")


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[tuple[str, Callable[[str], None]]]:
    port = free_port_pair()
    env = {**os.environ, "STACK_STATE_DIR": str(tmp_path), "KAFKA_PORT": str(port)}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)

    def stack(command: str) -> None:
        subprocess.run(
            ["bash", str(ROOT / "scripts/stack.sh"), command], env=env, check=True, timeout=120
        )

    stack("kafka-up")
    try:
        yield f"127.0.0.1:{port}", stack
    finally:
        stack("kafka-down")


@pytest.fixture
async def outage_settings(
    own_broker: tuple[str, Callable[[str], None]], classifier_settings: ClassifierSettings
) -> ClassifierSettings:
    settings = classifier_settings.model_copy(update={"kafka_bootstrap_servers": own_broker[0]})
    await ensure_topics(settings)
    return settings


async def test_requests_get_503_while_the_broker_is_down_and_retries_lose_nothing(
    own_broker: tuple[str, Callable[[str], None]],
    outage_settings: ClassifierSettings,
    sessions: async_sessionmaker[AsyncSession],
    intake_headers: dict[str, str],
) -> None:
    bootstrap, stack = own_broker
    ingest_settings = IngestSettings(
        kafka_bootstrap_servers=bootstrap,
        activity_topic=outage_settings.activity_topic,
        database_url=outage_settings.database_url,
        publish_timeout_seconds=3,
        retry_after_seconds=2,
    )
    app = create_app(ingest_settings)
    second = {**ORDER, "order_id": "SO-OUT-2"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://i", headers=intake_headers
        ) as client:
            first = await client.post("/v1/orders", json=ORDER)
            assert first.status_code == 202

            await asyncio.to_thread(stack, "kafka-down")
            refused = await client.post("/v1/orders", json=second)
            refused_batch = await client.post("/v1/orders:batch", json=[second])
            not_ready = await client.get("/readyz")

            await asyncio.to_thread(stack, "kafka-up")

            async def retried() -> httpx.Response | None:
                response = await client.post("/v1/orders", json=second)
                return response if response.status_code == 202 else None

            accepted = await eventually(retried, within=60, interval=1)
            accepted_again = await client.post("/v1/orders", json=second)
            ready = await client.get("/readyz")

    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "2"
    assert "event_ids" not in refused.json()
    assert refused_batch.status_code == 503
    assert not_ready.status_code == 503
    assert ready.status_code == 200
    second_id = accepted.json()["event_ids"][0]
    assert accepted_again.json()["event_ids"] == [second_id]

    # Whatever copies reached the topic, the classifier applies each event once.
    records = await read_topic(bootstrap, outage_settings.activity_topic, expected=3)
    assert len(records) >= 3
    stopping = asyncio.Event()
    worker = asyncio.create_task(run_worker(outage_settings, stopping))
    try:

        async def both_applied() -> Customer | None:
            async with sessions() as session:
                row = await session.get(Customer, "cust-outage")
                return row if row is not None and row.order_count == 2 else None

        row = await eventually(both_applied, within=30)
        await asyncio.sleep(1)  # let any duplicate copies be consumed too
        async with sessions() as session:
            row = await session.get(Customer, "cust-outage")
            processed = await session.scalar(select(func.count()).select_from(ProcessedEvent))
    finally:
        stopping.set()
        await asyncio.wait_for(worker, timeout=30)
    assert row is not None
    assert row.order_count == 2
    assert processed == 2
    assert second_id in {dict(r.headers)["event_id"].decode() for r in records}
