"""Every 202 names the customer each accepted event is keyed by, derived ids included,
so a caller can look the customer up: checked against what the broker holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from eventschemas.envelope import Envelope
from ingest.config import IngestSettings
from ingest.imports import service as imports_service
from tests.integration.test_ingest_webhooks import generic_headers, hubspot_headers
from tests.kafka_helpers import read_topic

pytestmark = pytest.mark.integration

ORDER = {"amount": "10", "currency": "USD", "placed_at": "2026-11-01T10:00:00+00:00"}
CALL = {"started_at": "2026-11-01T10:00:00+00:00", "outcome": "interested"}


async def keys_by_event(settings: IngestSettings, expected: int) -> dict[str, str]:
    """{event id: the Kafka key (= subject) it was published under}."""
    records = await read_topic(
        settings.kafka_bootstrap_servers, settings.activity_topic, expected=expected
    )
    keys = {}
    for record in records:
        envelope = Envelope.from_bytes(record.value)
        assert record.key is not None
        assert record.key.decode() == envelope.subject
        keys[envelope.id] = envelope.subject
    return keys


def named(answer: dict[str, Any]) -> dict[str, str]:
    """{event id: customer id} as the answer gives them (one customer per event)."""
    assert len(answer["customer_ids"]) == len(answer["event_ids"]) == answer["accepted"]
    return dict(zip(answer["event_ids"], answer["customer_ids"], strict=True))


async def test_single_orders_and_calls_name_their_customer_derived_or_given(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    answers = [
        await ingest.post("/v1/orders", json={**ORDER, "order_id": "A-1", "customer_id": "c-9"}),
        await ingest.post("/v1/orders", json={**ORDER, "order_id": "A-2", "email": "a@example.cn"}),
        await ingest.post("/v1/orders", json={**ORDER, "order_id": "A-3", "phone": "13800138000"}),
        await ingest.post("/v1/calls", json={**CALL, "call_id": "K-1", "phone": "13800138000"}),
        await ingest.post("/v1/calls", json={**CALL, "call_id": "K-2", "customer_id": "c-9"}),
    ]
    assert [a.status_code for a in answers] == [202] * 5
    customers = [a.json()["customer_ids"] for a in answers]

    assert customers[0] == ["c-9"]
    assert customers[1][0].startswith("id-e-")
    assert customers[2][0].startswith("id-p-")
    assert customers[3] == customers[2]  # the same phone is the same customer
    assert customers[4] == ["c-9"]
    published = await keys_by_event(ingest_settings, expected=5)
    for answer in answers:
        assert named(answer.json()).items() <= published.items()


async def test_a_batch_names_the_customer_of_every_accepted_item(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    items = [
        {**ORDER, "order_id": "B-1", "customer_id": "c-1"},
        {**ORDER, "order_id": "B-2"},  # no customer: rejected, so not named
        {**ORDER, "order_id": "B-3", "email": "b@example.cn"},
        {**ORDER, "order_id": "B-4", "phone": "+86 138 0013 8001"},
    ]
    response = await ingest.post("/v1/orders:batch", json=items)

    assert response.status_code == 202, response.text
    answer = response.json()
    assert [r["index"] for r in answer["rejected"]] == [1]
    assert answer["customer_ids"][0] == "c-1"
    assert answer["customer_ids"][1].startswith("id-e-")
    assert answer["customer_ids"][2].startswith("id-p-")
    assert named(answer) == await keys_by_event(ingest_settings, expected=3)


async def test_a_csv_import_names_the_customer_and_line_of_every_accepted_row(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    csv = (
        "order_id,customer_id,email,amount,currency,placed_at\n"
        "C-1,c-1,,10,USD,2025-01-10T10:00:00Z\n"
        "C-2,,,10,USD,2025-01-10T10:00:00Z\n"
        "C-3,,c@example.cn,10,USD,2025-01-10T10:00:00Z\n"
    )
    response = await ingest.post(
        "/v1/imports/orders", files={"file": ("orders.csv", csv.encode(), "text/csv")}
    )

    assert response.status_code == 202, response.text
    report = response.json()
    assert (report["accepted"], report["rejected"]) == (2, 1)
    assert report["lines"] == [2, 4]
    assert report["customer_ids"][0] == "c-1"
    assert report["customer_ids"][1].startswith("id-e-")
    assert named(report) == await keys_by_event(ingest_settings, expected=2)


async def test_crm_webhooks_name_the_customer_of_every_event(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    generic = orjson.dumps(
        {
            "events": [
                {"type": "contact.updated", "id": "w-1", "customer_id": "crm-1",
                 "occurred_at": "2026-11-20T10:00:00+08:00"},
                {"type": "contact.updated", "id": "w-2", "email": "w@example.cn",
                 "occurred_at": "2026-11-20T10:00:00+08:00"},
            ]
        }
    )  # fmt: skip
    from_generic = await ingest.post(
        "/v1/webhooks/generic", content=generic, headers=generic_headers(ingest_settings, generic)
    )
    assert from_generic.status_code == 202, from_generic.text
    assert from_generic.json()["customer_ids"][0] == "crm-1"
    assert from_generic.json()["customer_ids"][1].startswith("id-e-")

    body = (Path(__file__).parents[1] / "fixtures/webhooks/hubspot_contacts.json").read_bytes()
    url = "http://ingest/v1/webhooks/hubspot"
    from_hubspot = await ingest.post(
        url, content=body, headers=hubspot_headers(ingest_settings, url, body)
    )
    assert from_hubspot.status_code == 202, from_hubspot.text
    assert from_hubspot.json()["customer_ids"] == [
        "hubspot-contact-1246965",
        "hubspot-contact-1246978",
    ]
    published = await keys_by_event(ingest_settings, expected=4)
    assert named(from_generic.json()) | named(from_hubspot.json()) == published


async def test_a_large_import_lists_its_first_rows_and_says_so(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imports_service, "MAX_LISTED_EVENTS", 2)  # 100,000 in service
    csv = "order_id,customer_id,amount,currency,placed_at\n" + "".join(
        f"L-{i},c-{i},10,USD,2025-01-10T10:00:00Z\n" for i in range(3)
    )
    response = await ingest.post(
        "/v1/imports/orders", files={"file": ("orders.csv", csv.encode(), "text/csv")}
    )

    report = response.json()
    assert report["accepted"] == 3
    assert (report["customer_ids"], report["lines"]) == (["c-0", "c-1"], [2, 3])
    assert report["events_truncated"] is True
    published = await keys_by_event(ingest_settings, expected=3)
    assert dict(zip(report["event_ids"], report["customer_ids"], strict=True)).items() <= (
        published.items()
    )
