"""CRM merges at the edge, against the real broker: HubSpot `*.merge` subscription events
and the generic `contact.merged` become `crm.contact.merged` / `crm.company.merged`."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from eventschemas.envelope import Envelope
from eventschemas.events import CrmContactMerged
from ingest.config import IngestSettings
from tests.integration.test_ingest_webhooks import (
    generic_headers,
    hubspot_headers,
    nothing_published,
    published,
)

pytestmark = pytest.mark.integration
HUBSPOT_URL = "http://ingest/v1/webhooks/hubspot"


def hubspot_merge(**fields: Any) -> dict[str, Any]:
    """A merge subscription event as HubSpot documents it (now, portal 33)."""
    return {
        "eventId": 3001,
        "subscriptionId": 77,
        "portalId": 33,
        "appId": 1160452,
        "occurredAt": int(time.time() * 1000) - 60_000,
        "subscriptionType": "contact.merge",
        "attemptNumber": 0,
        "objectId": 501,
        "changeSource": "CRM_UI",
        "primaryObjectId": 501,
        "mergedObjectIds": [502],
        "newObjectId": 509,
        "numberOfPropertiesMoved": 12,
        **fields,
    }


async def post_hubspot(
    ingest: httpx.AsyncClient, settings: IngestSettings, events: list[dict[str, Any]]
) -> httpx.Response:
    body = orjson.dumps(events)
    return await ingest.post(
        HUBSPOT_URL, content=body, headers=hubspot_headers(settings, HUBSPOT_URL, body)
    )


async def test_a_signed_hubspot_merge_publishes_one_merged_event_per_merge(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    events = [
        # The primary listed among the merged ids too: it absorbs only the others.
        hubspot_merge(mergedObjectIds=[502, 501, 503]),
        hubspot_merge(
            eventId=3002,
            subscriptionType="company.merge",
            objectId=None,
            primaryObjectId=7001,
            mergedObjectIds=[7002],
            newObjectId=None,
        ),
    ]
    response = await post_hubspot(ingest, ingest_settings, events)

    assert response.status_code == 202, response.text
    assert response.json()["ignored"] == []
    company, contact = await published(ingest_settings, 2)
    assert (contact.type, contact.source, contact.subject) == (
        "crm.contact.merged",
        "crm/hubspot",
        "hubspot-contact-501",
    )
    # The record's new id (HubSpot's later events name it) leads to the survivor too.
    assert contact.data["absorbed_ids"] == [
        "hubspot-contact-502",
        "hubspot-contact-503",
        "hubspot-contact-509",
    ]
    assert contact.data["crm_record_id"] == "509"
    assert contact.data["identity"] is None
    # merged_at (and the envelope's time) is HubSpot's occurredAt.
    assert contact.time.timestamp() * 1000 == events[0]["occurredAt"]
    assert Envelope.from_bytes(contact.to_bytes()).data["merged_at"] == contact.data["merged_at"]
    assert contact.data["source_event_id"].endswith(":3001")
    assert (
        CrmContactMerged.model_validate(contact.data).absorbed_ids == contact.data["absorbed_ids"]
    )
    assert (company.type, company.subject) == ("crm.company.merged", "hubspot-company-7001")
    assert company.data["absorbed_ids"] == ["hubspot-company-7002"]
    assert company.data["crm_record_id"] is None
    assert response.json()["customer_ids"] == ["hubspot-contact-501", "hubspot-company-7001"]

    # HubSpot retries a delivery with the same eventIds: the same event ids.
    again = await post_hubspot(ingest, ingest_settings, events)
    assert again.json()["event_ids"] == response.json()["event_ids"]


async def test_a_merge_of_the_generic_object_subscription_is_mapped_by_its_type(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    event = hubspot_merge(subscriptionType="object.merge", objectTypeId="0-1")
    response = await post_hubspot(ingest, ingest_settings, [event])
    assert response.status_code == 202, response.text
    [merged] = await published(ingest_settings, 1)
    assert (merged.type, merged.subject) == ("crm.contact.merged", "hubspot-contact-501")
    assert merged.data["absorbed_ids"] == ["hubspot-contact-502", "hubspot-contact-509"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"mergedObjectIds": None}, "[0].mergedObjectIds"),
        ({"mergedObjectIds": []}, "[0].mergedObjectIds"),
        ({"mergedObjectIds": [501]}, "[0].mergedObjectIds"),
        ({"mergedObjectIds": list(range(1000, 1101))}, "[0].mergedObjectIds"),
        ({"mergedObjectIds": ["not-an-id"]}, "[0].mergedObjectIds.0"),
        ({"primaryObjectId": None, "objectId": None}, "[0].primaryObjectId"),
        ({"occurredAt": int(time.time() * 1000) + 3_600_000}, "[0].occurredAt"),
    ],
)
async def test_a_bad_hubspot_merge_is_refused_naming_the_field(
    ingest: httpx.AsyncClient,
    ingest_settings: IngestSettings,
    change: dict[str, Any],
    field: str,
) -> None:
    event = {k: v for k, v in hubspot_merge(**change).items() if v is not None}
    response = await post_hubspot(ingest, ingest_settings, [event])
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert await nothing_published(ingest_settings)


def generic_merge(**fields: Any) -> dict[str, Any]:
    return {
        "type": "contact.merged",
        "id": "merge-1",
        "customer_id": "cust-42",
        "absorbed_customer_ids": ["cust-43", "cust-44"],
        "merged_at": "2026-11-20T10:10:00+08:00",
        "revision": 1,
        **fields,
    }


async def post_generic(
    ingest: httpx.AsyncClient, settings: IngestSettings, events: list[dict[str, Any]]
) -> httpx.Response:
    body = orjson.dumps({"events": events})
    return await ingest.post(
        "/v1/webhooks/generic", content=body, headers=generic_headers(settings, body)
    )


async def test_a_generic_merge_publishes_crm_contact_merged(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    response = await post_generic(
        ingest, ingest_settings, [generic_merge(), generic_merge(id=None, type="company.merged")]
    )
    assert response.status_code == 202, response.text
    events = await published(ingest_settings, 2)
    assert {e.type for e in events} == {"crm.contact.merged", "crm.company.merged"}
    for event in events:
        assert (event.source, event.subject) == ("crm/generic", "cust-42")
        assert event.data["absorbed_ids"] == ["cust-43", "cust-44"]
        assert datetime.fromisoformat(event.data["merged_at"]) == datetime(
            2026, 11, 20, 2, 10, tzinfo=UTC
        )
        assert event.data["revision"] == 1
    by_type = {e.type: e for e in events}
    assert by_type["crm.contact.merged"].data["source_event_id"] == "merge-1"
    # Without an id the merge is named by who absorbed whom, when: a retry is the same event.
    assert by_type["crm.company.merged"].data["source_event_id"] is None
    again = await post_generic(
        ingest, ingest_settings, [generic_merge(), generic_merge(id=None, type="company.merged")]
    )
    assert again.json()["event_ids"] == response.json()["event_ids"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            {"absorbed_customer_ids": ["cust-43", "cust-42"]},
            "events[0].absorbed_customer_ids",
        ),
        ({"absorbed_customer_ids": ["cust-43", "cust-43"]}, "events[0].absorbed_customer_ids"),
        ({"absorbed_customer_ids": []}, "events.0.contact.merged.absorbed_customer_ids"),
        (
            {"absorbed_customer_ids": [f"c-{i}" for i in range(101)]},
            "events.0.contact.merged.absorbed_customer_ids",
        ),
        ({"absorbed_customer_ids": None}, "events.0.contact.merged.absorbed_customer_ids"),
        ({"customer_id": None}, "events.0.contact.merged.customer_id"),
        ({"merged_at": "yesterday"}, "events.0.contact.merged.merged_at"),
        ({"merged_at": "2999-01-01T00:00:00Z"}, "events.0.contact.merged.merged_at"),
        (
            {"merged_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()},
            "events[0].merged_at",
        ),
        ({"revision": "1"}, "events.0.contact.merged.revision"),
        ({"phone": "13800138000"}, "events.0.contact.merged.phone"),
    ],
)
async def test_a_bad_generic_merge_is_refused_naming_the_field(
    ingest: httpx.AsyncClient,
    ingest_settings: IngestSettings,
    change: dict[str, Any],
    field: str,
) -> None:
    event = {k: v for k, v in generic_merge(**change).items() if v is not None}
    response = await post_generic(ingest, ingest_settings, [event])
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]
    assert await nothing_published(ingest_settings)
