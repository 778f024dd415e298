"""No input stops intake or classification: poison is refused (HTTP) or dead-lettered (topic)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import asyncpg
import httpx
import orjson
import pytest

from eventschemas.envelope import Envelope
from ingest.webhooks.auth import generic_signature
from tests.chaos.conftest import Stack, order, wait_until
from tests.kafka_helpers import publish_raw, read_topic

pytestmark = pytest.mark.chaos

ACTIVITY = "customer-activity.v1"
DLQ = "customer-activity.dlq.v1"


def classified(stack: Stack, customer_id: str, orders: int = 1) -> bool:
    answer = stack.customer(customer_id)
    return answer.status_code == 200 and answer.json()["aggregates"]["order_count"] == orders


def test_poison_requests_are_refused_and_intake_goes_on(chaos_stack: Stack) -> None:
    stack = chaos_stack
    worker, ingest = stack.pid("classifier-worker"), stack.pid("ingest")
    tag = uuid.uuid4().hex[:6]
    big_notes = {
        "call_id": f"{tag}-big",
        "customer_id": f"{tag}-c",
        "started_at": "2026-11-20T09:30:00+08:00",
        "outcome": "interested",
        "notes": "x" * 9_000,
    }
    poisons: list[tuple[str, dict[str, object] | list[object], int, str]] = [
        ("/v1/orders", order(f"{tag}\u0000nul", f"{tag}-1"), 422, "U+0000"),
        ("/v1/orders", order(f"{tag}-c", f"{tag}\u0000o"), 422, "U+0000"),
        (
            "/v1/orders",
            {**order(f"{tag}-c", f"{tag}-2"), "placed_at": "0001-01-01T00:30:00+01:00"},
            422,
            "1970",
        ),
        (
            "/v1/orders",
            {**order(f"{tag}-c", f"{tag}-3"), "placed_at": "0001-01-01T00:00:00Z"},
            422,
            "1970",
        ),
        (
            "/v1/orders",
            {**order(f"{tag}-c", f"{tag}-4"), "placed_at": "1985-06-01T00:00:00Z"},
            422,
            "1990",
        ),
        ("/v1/orders", {**order(f"{tag}-c", f"{tag}-5"), "revision": 2**70}, 422, "revision"),
        ("/v1/orders", {**order(f"{tag}-c", f"{tag}-6"), "revision": True}, 422, "revision"),
        (
            f"/v1/orders/{tag}-1/cancellation",
            {"customer_id": f"{tag}-c", "cancelled_at": "0001-01-01T00:00:00Z"},
            422,
            "1970",
        ),
        ("/v1/calls", {**big_notes, "agent_id": "a\u0007"}, 422, "U+0007"),
        (
            "/v1/orders:batch",
            [{**order(f"{tag}-c", f"{tag}-b{i}"), "revision": "3"} for i in range(2)],
            422,
            "revision",
        ),
    ]
    with httpx.Client(base_url=stack.ingest, timeout=30, headers=stack.intake_headers()) as client:
        for path, body, status, needle in poisons:
            answer = client.post(path, json=body)
            assert answer.status_code == status, (path, answer.text)
            assert needle in answer.text, answer.text
        # A CSV upload with one 30 MB line: refused after 64 KiB, fast.
        csv_body = (
            b"order_id,customer_id,amount,currency,placed_at\n"
            + f"{tag}-csv,{tag}-c,1,CNY,2026-11-20T09:30:00+08:00".encode()
            + b"x" * (30 * 1024 * 1024)
            + b"\n"
        )
        answer = client.post("/v1/imports/orders", files={"file": ("o.csv", csv_body, "text/csv")})
        assert answer.status_code == 422, answer.text
        assert "line 2 is longer than 65536 bytes" in answer.text
        # And intake goes on: the next order is accepted and classified.
        assert client.post("/v1/orders", json=order(f"{tag}-ok", f"{tag}-ok")).status_code == 202
    wait_until(lambda: classified(stack, f"{tag}-ok"), within=30)
    assert (stack.pid("classifier-worker"), stack.pid("ingest")) == (worker, ingest)


def test_oversized_webhook_is_413_not_503(chaos_stack: Stack) -> None:
    """A CRM that gets 503 retries forever: one event beyond the broker's message
    limit, in a signed 2 MB webhook (under the 5 MB body limit), must be a 413."""
    stack = chaos_stack
    secret = stack.env["INGEST_GENERIC_WEBHOOK_SECRET"]
    tag = uuid.uuid4().hex[:6]
    event = {
        "type": "contact.updated",
        "id": f"{tag}-n1",
        "customer_id": f"{tag}-c",
        "occurred_at": "2026-11-20T09:30:00+08:00",
        "attributes": {f"field_{i}": "v" * 1000 for i in range(2000)},
    }
    body = orjson.dumps({"events": [event]})
    stamp = str(int(time.time()))
    headers = {
        "content-type": "application/json",
        "X-Webhook-Timestamp": stamp,
        "X-Webhook-Signature": generic_signature(secret, stamp, body),
    }
    answer = httpx.post(
        f"{stack.ingest}/v1/webhooks/generic", content=body, headers=headers, timeout=30
    )
    assert answer.status_code == 413, answer.text
    assert "at most 1000000 bytes" in answer.text
    # A NUL inside CRM attributes (the event contract refuses it): 422, not 500.
    event = {**event, "id": f"{tag}-n2", "attributes": {"industry": "re\u0000tail"}}
    body = json.dumps({"events": [event]}).encode()  # NUL escaped as \u0000 in JSON
    headers["X-Webhook-Signature"] = generic_signature(secret, stamp, body)
    answer = httpx.post(
        f"{stack.ingest}/v1/webhooks/generic", content=body, headers=headers, timeout=30
    )
    assert answer.status_code == 422, answer.text
    assert "U+0000" in answer.text


def _raw(value: bytes, key: bytes = b"k") -> tuple[bytes, bytes]:
    return key, value


def _envelope(customer: str, order_id: str, **overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "customer_id": customer,
        "order_id": order_id,
        "amount": "10",
        "currency": "USD",
        "amount_base": "10",
        "base_currency": "USD",
        "placed_at": "2026-11-20T09:30:00+08:00",
        "status": "paid",
        "revision": 0,
    }
    data.update(overrides.pop("data", {}))  # type: ignore[call-overload]
    env: dict[str, object] = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "chaos",
        "type": "order.placed",
        "subject": customer,
        "time": "2026-11-20T09:30:00+08:00",
        "datacontenttype": "application/json",
        "dataschema": "urn:customer-classifier:schema:order.placed:v1",
        "data": data,
    }
    env.update(overrides)
    return env


async def test_poison_on_the_topic_is_dead_lettered_and_the_worker_goes_on(
    chaos_stack: Stack,
) -> None:
    stack = chaos_stack
    worker = stack.pid("classifier-worker")
    tag = uuid.uuid4().hex[:6]
    before = len(await read_topic(stack.kafka, DLQ, expected=10**6, within=1))
    poison = [
        orjson.dumps(_envelope(f"{tag}\u0000", f"{tag}-1", data={"customer_id": f"{tag}\u0000"})),
        orjson.dumps(
            _envelope(f"{tag}-c", f"{tag}-2", data={"placed_at": "0001-01-01T00:30:00+01:00"})
        ),
        orjson.dumps(_envelope(f"{tag}-c", f"{tag}-3", time="0001-01-01T00:00:00Z")),
        json.dumps(_envelope(f"{tag}-c", f"{tag}-4", data={"revision": 2**70})).encode(),
        b'{"specversion":"1.0","id":"\\ud800","source":"chaos"}',
        b"\xff\xfe not json",
        b"",
    ]
    good = Envelope.model_validate(_envelope(f"{tag}-ok", f"{tag}-ok")).to_bytes()
    await publish_raw(stack.kafka, ACTIVITY, [_raw(v, f"{tag}-c".encode()) for v in poison])
    await publish_raw(stack.kafka, ACTIVITY, [_raw(good, f"{tag}-ok".encode())])
    await asyncio.to_thread(wait_until, lambda: classified(stack, f"{tag}-ok"), 30)
    records = await read_topic(stack.kafka, DLQ, expected=before + len(poison), within=20)
    fresh = records[before:]
    assert len(fresh) == len(poison)
    reasons = {dict(r.headers)["dlq_reason"].decode() for r in fresh}
    assert reasons <= {"empty", "invalid_envelope", "invalid_data"}, reasons
    assert stack.pid("classifier-worker") == worker, stack.log_tail("classifier-worker")


async def test_an_event_that_fails_in_the_database_is_isolated(chaos_stack: Stack) -> None:
    """Split the batch until the one failing event is found; the rest are applied."""
    stack = chaos_stack
    worker = stack.pid("classifier-worker")
    tag = uuid.uuid4().hex[:6]
    envelopes = [
        Envelope.model_validate(_envelope(f"{tag}-{i % 5}", f"{tag}-o{i}")) for i in range(40)
    ]
    refused = envelopes[17].id
    conn = await asyncpg.connect(stack.dsn)
    try:
        await conn.execute(
            f"""
            CREATE OR REPLACE FUNCTION chaos_refuse_{tag}() RETURNS trigger AS $$
            BEGIN
              IF NEW.event_id = '{refused}' THEN
                RAISE EXCEPTION 'refused by the chaos test' USING ERRCODE = '22023';
              END IF;
              RETURN NEW;
            END $$ LANGUAGE plpgsql;
            CREATE TRIGGER chaos_refuse_{tag} BEFORE INSERT ON inbox
              FOR EACH ROW EXECUTE FUNCTION chaos_refuse_{tag}();
            """
        )
        before = len(await read_topic(stack.kafka, DLQ, expected=10**6, within=1))
        await publish_raw(
            stack.kafka, ACTIVITY, [(e.subject.encode(), e.to_bytes()) for e in envelopes]
        )
        records = await read_topic(stack.kafka, DLQ, expected=before + 1, within=30)
        fresh = records[before:]
        assert [dict(r.headers)["dlq_reason"] for r in fresh] == [b"processing_failed"]
        assert Envelope.from_bytes(fresh[0].value).id == refused

        async def all_applied() -> bool:
            count = await conn.fetchval(
                "SELECT count(*) FROM inbox WHERE event_id = ANY($1::text[])",
                [e.id for e in envelopes],
            )
            return int(count) == 39

        for _ in range(300):
            if await all_applied():
                break
            await asyncio.sleep(0.1)
        assert await all_applied()
    finally:
        await conn.execute(f"DROP TRIGGER IF EXISTS chaos_refuse_{tag} ON inbox")
        await conn.close()
    assert stack.pid("classifier-worker") == worker
