"""Refunds, cancellations, call logs and batch intake against the real broker."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import orjson
import pytest

from eventschemas.envelope import Envelope
from ingest.app import create_app
from ingest.config import IngestSettings
from tests.kafka_helpers import read_topic, topic_size

pytestmark = pytest.mark.integration


def order(i: int, **changes: Any) -> dict[str, Any]:
    return {
        "order_id": f"B-{i}",
        "customer_id": f"c-{i % 3}",
        "amount": "10.00",
        "currency": "USD",
        "placed_at": "2026-11-01T10:00:00Z",
        **changes,
    }


CALL = {
    "call_id": "CALL-1",
    "customer_id": "c-9",
    "agent_id": "agent-7",
    "started_at": "2026-11-20T14:05:00+08:00",
    "duration_seconds": 184,
    "outcome": "interested",
    "intent": "medium",
    "notes": "PII-SECRET-13800138000",
}


async def published(settings: IngestSettings, expected: int) -> list[Envelope]:
    records = await read_topic(
        settings.kafka_bootstrap_servers, settings.activity_topic, expected=expected, within=10
    )
    return [Envelope.from_bytes(r.value) for r in records]


async def test_refund_and_cancellation_are_published(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    refund = await ingest.post(
        "/v1/orders/SO-1/refunds",
        json={
            "refund_id": "RF-1",
            "customer_id": "c-1",
            "amount": "30",
            "currency": "EUR",
            "refunded_at": "2026-11-02T10:00:00Z",
        },
    )
    cancel = await ingest.post(
        "/v1/orders/SO-2/cancellation",
        json={"customer_id": "c-1", "cancelled_at": "2026-11-02T11:00:00Z"},
    )

    assert (refund.status_code, cancel.status_code) == (202, 202)
    first, second = await published(ingest_settings, 2)
    assert (first.type, first.data["order_id"], first.data["amount_base"]) == (
        "order.refunded",
        "SO-1",
        "32.4000",
    )
    assert (second.type, second.data["order_id"], second.subject) == (
        "order.cancelled",
        "SO-2",
        "c-1",
    )


async def test_call_log_is_published_and_its_notes_are_never_logged(
    ingest: httpx.AsyncClient,
    ingest_settings: IngestSettings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)

    response = await ingest.post("/v1/calls", json=CALL)
    bad = await ingest.post("/v1/calls", json={**CALL, "duration_seconds": -1})

    assert response.status_code == 202
    assert bad.status_code == 422
    assert "PII-SECRET" not in bad.text
    [envelope] = await published(ingest_settings, 1)
    assert (envelope.type, envelope.data["outcome"], envelope.data["intent"]) == (
        "call.logged",
        "interested",
        "medium",
    )
    assert "PII-SECRET" not in caplog.text


async def test_batch_publishes_the_good_items_and_reports_the_bad(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    items = [order(0), order(1, amount="-5"), order(2), order(3), order(4, currency="XYZ")]

    response = await ingest.post("/v1/orders:batch", json=items)

    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 3
    assert [(r["index"], [e["field"] for e in r["errors"]]) for r in body["rejected"]] == [
        (1, ["amount"]),
        (4, ["currency"]),
    ]
    by_id = {e.id: e.data["order_id"] for e in await published(ingest_settings, 3)}
    # event_ids come in item order; the topic orders per customer partition.
    assert [by_id[i] for i in body["event_ids"]] == ["B-0", "B-2", "B-3"]


async def test_ndjson_batch_of_calls(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    lines = b"\n".join(orjson.dumps({**CALL, "call_id": f"C-{i}"}) for i in range(4)) + b"\n"

    response = await ingest.post(
        "/v1/calls:batch", content=lines, headers={"content-type": "application/x-ndjson"}
    )

    assert response.status_code == 202
    assert response.json()["accepted"] == 4
    assert len(await published(ingest_settings, 4)) == 4


@pytest.mark.parametrize(
    ("content", "content_type", "status", "field"),
    [
        pytest.param(
            orjson.dumps([order(0, amount="x"), order(1, customer_id="")]),
            "application/json",
            422,
            "[0].amount",
            id="no-valid-item",
        ),
        pytest.param(orjson.dumps(order(0)), "application/json", 422, "body", id="not-an-array"),
        pytest.param(b"[{", "application/json", 422, "body", id="invalid-json"),
        pytest.param(b"[]", "application/json", 422, "body", id="empty"),
        pytest.param(b"order_id,amount\n1,2\n", "text/csv", 415, None, id="wrong-content-type"),
        pytest.param(
            orjson.dumps([order(i) for i in range(1001)]),
            "application/json",
            413,
            None,
            id="too-many-items",
        ),
    ],
)
async def test_bad_batches_are_refused_and_publish_nothing(
    ingest: httpx.AsyncClient,
    ingest_settings: IngestSettings,
    content: bytes,
    content_type: str,
    status: int,
    field: str | None,
) -> None:
    response = await ingest.post(
        "/v1/orders:batch", content=content, headers={"content-type": content_type}
    )

    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    if field is not None:
        assert field in [e["field"] for e in response.json()["errors"]]
    size = await topic_size(ingest_settings.kafka_bootstrap_servers, ingest_settings.activity_topic)
    assert size == 0


async def test_batch_with_the_broker_down_claims_nothing(
    ingest_settings: IngestSettings, intake_headers: dict[str, str]
) -> None:
    settings = ingest_settings.model_copy(
        update={"kafka_bootstrap_servers": "127.0.0.1:1", "publish_timeout_seconds": 2}
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://ingest", headers=intake_headers
        ) as client:
            response = await client.post("/v1/orders:batch", json=[order(0), order(1)])

    assert response.status_code == 503
    assert "retry-after" in response.headers
    assert "event_ids" not in response.json()
