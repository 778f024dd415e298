"""Ingest at the edge: identity normalisation, size limits, metrics, and no PII in logs."""

from __future__ import annotations

import logging

import httpx
import pytest

from eventschemas.envelope import Envelope
from ingest.app import create_app
from ingest.config import IngestSettings
from tests.identities import digested
from tests.kafka_helpers import read_topic, topic_size

pytestmark = pytest.mark.integration

ORDER = {
    "order_id": "SO-77",
    "amount": "10",
    "currency": "USD",
    "placed_at": "2026-11-01T10:00:00+00:00",
}
CALL = {
    "call_id": "CALL-5",
    "customer_id": "cust-5",
    "started_at": "2026-11-01T10:00:00+00:00",
    "outcome": "interested",
    "phone": "+86 138-0013-8000",
    "notes": "Mrs Zhang at zhang.li@example.cn wants 20 units",
}


async def test_phone_and_email_are_normalised_and_resolve_the_customer(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings, identity_key: bytes
) -> None:
    by_email = await ingest.post(
        "/v1/orders", json={**ORDER, "email": " Zhang.Li@Example.CN ", "phone": "13800138000"}
    )
    by_email_again = await ingest.post(
        "/v1/orders", json={**ORDER, "order_id": "SO-78", "email": "zhang.li@example.cn"}
    )
    by_phone = await ingest.post(
        "/v1/orders", json={**ORDER, "order_id": "SO-79", "phone": "+86 (138) 0013 8000"}
    )
    assert {r.status_code for r in (by_email, by_email_again, by_phone)} == {202}

    records = await read_topic(
        ingest_settings.kafka_bootstrap_servers, ingest_settings.activity_topic, expected=3
    )
    events = {e.data["order_id"]: e for e in (Envelope.from_bytes(r.value) for r in records)}
    first, second, third = events["SO-77"], events["SO-78"], events["SO-79"]
    assert first.data["identity"] == digested(
        identity_key, phone="+8613800138000", email="zhang.li@example.cn"
    )
    # The same e-mail, however written, is the same customer; the id is the keyed digest.
    assert first.subject == second.subject
    assert first.subject == f"id-e-{first.data['identity']['email_hash'][:24]}"
    assert "zhang" not in first.subject
    assert third.data["identity"] == digested(identity_key, phone="+8613800138000")
    assert third.subject == f"id-p-{third.data['identity']['phone_hash'][:24]}"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({}, "customer_id"),
        ({"phone": "12"}, "phone"),
        ({"phone": "call me"}, "phone"),
        ({"email": "not-an-address"}, "email"),
    ],
)
async def test_unusable_identity_is_refused_naming_the_field(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings, extra: dict[str, str], field: str
) -> None:
    response = await ingest.post("/v1/orders", json={**ORDER, **extra})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert (
        await topic_size(ingest_settings.kafka_bootstrap_servers, ingest_settings.activity_topic)
        == 0
    )


async def test_call_notes_and_phones_never_reach_the_logs(
    ingest: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    response = await ingest.post("/v1/calls", json=CALL)
    bad = await ingest.post("/v1/calls", json={**CALL, "phone": "Mrs Zhang 12"})
    assert response.status_code == 202
    assert bad.status_code == 422
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in ("zhang", "Zhang", "138", "example.cn", "20 units"):
        assert secret not in logged


@pytest.mark.parametrize("chunked", [False, True])
async def test_oversized_bodies_get_413_and_publish_nothing(
    ingest_settings: IngestSettings, intake_headers: dict[str, str], chunked: bool
) -> None:
    app = create_app(ingest_settings.model_copy(update={"max_body_bytes": 2048}))
    items = b"[" + b",".join([b'{"order_id": "x"}'] * 200) + b"]"  # ~3.6 KB

    async def stream() -> object:
        for start in range(0, len(items), 512):
            yield items[start : start + 512]

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://i", headers=intake_headers
        ) as client:
            response = await client.post(
                "/v1/orders:batch",
                content=stream() if chunked else items,  # type: ignore[arg-type]
                headers={"content-type": "application/json"},
            )
            small = await client.post("/v1/orders", json={**ORDER, "customer_id": "c-1"})
            metrics = (await client.get("/metrics")).text

    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert "2048 bytes" in response.json()["detail"]
    assert small.status_code == 202
    assert (
        await topic_size(ingest_settings.kafka_bootstrap_servers, ingest_settings.activity_topic)
        == 1
    )
    assert 'ingest_rejects_total{reason="body-too-large"}' in metrics


async def test_metrics_count_requests_by_route_and_rejects_by_reason(
    ingest: httpx.AsyncClient,
) -> None:
    def sample(text: str, prefix: str) -> float:
        lines = [line for line in text.splitlines() if line.startswith(prefix)]
        return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0

    accepted = (
        "ingest_http_requests_total"
        '{method="POST",route="/v1/orders/{order_id}/cancellation",status="202"}'
    )
    rejected = 'ingest_rejects_total{reason="validation-error"}'
    published = 'ingest_events_published_total{type="order.cancelled"}'
    before = (await ingest.get("/metrics")).text

    ok = await ingest.post(
        "/v1/orders/SO-1/cancellation",
        json={"customer_id": "c-1", "cancelled_at": "2026-11-01T10:00:00+00:00"},
    )
    bad = await ingest.post("/v1/orders/SO-1/cancellation", json={"customer_id": "c-1"})
    after = (await ingest.get("/metrics")).text

    assert (ok.status_code, bad.status_code) == (202, 422)
    assert sample(after, accepted) == sample(before, accepted) + 1
    assert sample(after, rejected) == sample(before, rejected) + 1
    assert sample(after, published) == sample(before, published) + 1
    assert "SO-1" not in after  # raw paths never become labels
