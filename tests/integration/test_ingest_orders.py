"""POST /v1/orders against a real Kafka broker: what is published, and what is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from eventschemas.envelope import Envelope
from ingest.app import create_app
from ingest.config import IngestSettings
from tests.kafka_helpers import read_topic, topic_size

pytestmark = pytest.mark.integration

ORDER = {
    "order_id": "SO-1001",
    "customer_id": "cust-7",
    "amount": "100.50",
    "currency": "EUR",
    "placed_at": "2026-11-01T10:00:00+01:00",
    "status": "paid",
}


async def test_order_is_published_keyed_by_customer(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    response = await ingest.post("/v1/orders", json=ORDER)

    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 1
    [record] = await read_topic(
        ingest_settings.kafka_bootstrap_servers, ingest_settings.activity_topic, expected=1
    )
    assert record.key == b"cust-7"
    envelope = Envelope.from_bytes(record.value)
    assert envelope.id == body["event_ids"][0]
    assert envelope.type == "order.placed"
    assert envelope.subject == "cust-7"
    assert envelope.specversion == "1.0"
    assert envelope.time == datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    assert envelope.data["amount"] == "100.50"
    assert envelope.data["currency"] == "EUR"
    assert envelope.data["amount_base"] == "108.5400"  # EUR at the default rate 1.08
    assert envelope.data["base_currency"] == "USD"


async def test_retried_order_gets_the_same_event_id(ingest: httpx.AsyncClient) -> None:
    first = await ingest.post("/v1/orders", json=ORDER)
    again = await ingest.post("/v1/orders", json=ORDER)
    revised = await ingest.post("/v1/orders", json={**ORDER, "revision": 1})

    assert first.json()["event_ids"] == again.json()["event_ids"]
    assert revised.json()["event_ids"] != first.json()["event_ids"]


def _without(field: str) -> dict[str, Any]:
    return {k: v for k, v in ORDER.items() if k != field}


FUTURE = (datetime.now(UTC) + timedelta(days=2)).isoformat()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(_without("customer_id"), "customer_id", id="missing-customer"),
        pytest.param(_without("amount"), "amount", id="missing-amount"),
        pytest.param({**ORDER, "amount": "-3"}, "amount", id="negative-amount"),
        pytest.param({**ORDER, "amount": "ten"}, "amount", id="non-numeric-amount"),
        pytest.param({**ORDER, "amount": [1]}, "amount", id="wrong-type-amount"),
        pytest.param({**ORDER, "currency": "XYZ"}, "currency", id="unknown-currency"),
        pytest.param({**ORDER, "placed_at": "yesterday"}, "placed_at", id="bad-timestamp"),
        pytest.param({**ORDER, "placed_at": "2026-11-01T10:00:00"}, "placed_at", id="naive-time"),
        pytest.param({**ORDER, "placed_at": FUTURE}, "placed_at", id="future-timestamp"),
        pytest.param({**ORDER, "status": "lost"}, "status", id="unknown-status"),
        pytest.param({**ORDER, "colour": "red"}, "colour", id="unknown-field"),
    ],
)
async def test_bad_order_is_refused_naming_the_field_and_publishes_nothing(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings, body: dict[str, Any], field: str
) -> None:
    response = await ingest.post("/v1/orders", json=body)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    assert field in [e["field"] for e in problem["errors"]]
    assert field in problem["detail"]
    size = await topic_size(ingest_settings.kafka_bootstrap_servers, ingest_settings.activity_topic)
    assert size == 0


async def test_invalid_json_is_refused(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    response = await ingest.post(
        "/v1/orders", content=b'{"order_id": ', headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    assert response.json()["errors"]
    size = await topic_size(ingest_settings.kafka_bootstrap_servers, ingest_settings.activity_topic)
    assert size == 0


async def test_readyz_reports_the_broker(ingest: httpx.AsyncClient) -> None:
    response = await ingest.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "kafka": "ok"}


async def test_broker_down_answers_503_with_retry_after(
    ingest_settings: IngestSettings, intake_headers: dict[str, str]
) -> None:
    # Nothing listens on this port: the publisher must refuse, not pretend.
    settings = ingest_settings.model_copy(
        update={"kafka_bootstrap_servers": "127.0.0.1:1", "publish_timeout_seconds": 2}
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://ingest", headers=intake_headers
        ) as client:
            response = await client.post(
                "/v1/orders",
                content=orjson.dumps(ORDER),
                headers={"content-type": "application/json"},
            )
            ready = await client.get("/readyz")

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "event_ids" not in response.json()
    assert ready.status_code == 503
