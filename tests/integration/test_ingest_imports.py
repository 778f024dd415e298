"""CSV import against the real broker: per-row report, chunks, bad files, safe re-upload."""

from __future__ import annotations

import httpx
import pytest

from eventschemas.envelope import Envelope
from ingest.config import IngestSettings
from tests.kafka_helpers import read_topic, topic_size

pytestmark = pytest.mark.integration

ORDERS_CSV = (
    "order_id,customer_id,amount,currency,placed_at,status\n"
    "H-1,c-1,100.00,USD,2025-01-10T10:00:00Z,paid\n"
    "H-2,c-2,-3,USD,2025-01-11T10:00:00Z,paid\n"
    "H-3,c-1,50,EUR,2025-02-01T10:00:00Z,\n"
    "H-4,c-3,20,XYZ,2025-02-02T10:00:00Z,paid\n"
    "H-5,c-3,20,USD,2025-02-03T10:00:00Z,paid,surplus\n"
    "H-6,c-2,75.5,CNY,2025-03-01T10:00:00+08:00,fulfilled\n"
)


def upload(content: str | bytes) -> dict[str, tuple[str, bytes, str]]:
    data = content.encode() if isinstance(content, str) else content
    return {"file": ("orders.csv", data, "text/csv")}


async def test_good_rows_are_published_and_bad_rows_reported_by_line(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    response = await ingest.post("/v1/imports/orders", files=upload(ORDERS_CSV))

    assert response.status_code == 202
    report = response.json()
    assert (report["rows"], report["accepted"], report["rejected"]) == (6, 3, 3)
    assert [(e["line"], e["field"]) for e in report["errors"]] == [
        (3, "amount"),
        (5, "currency"),
        (6, "row"),
    ]
    records = await read_topic(
        ingest_settings.kafka_bootstrap_servers, ingest_settings.activity_topic, expected=3
    )
    assert sorted(Envelope.from_bytes(r.value).data["order_id"] for r in records) == [
        "H-1",
        "H-3",
        "H-6",
    ]


async def test_uploading_the_same_file_again_gives_the_same_event_ids(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    await ingest.post("/v1/imports/orders", files=upload(ORDERS_CSV))
    await ingest.post("/v1/imports/orders", files=upload(ORDERS_CSV))

    records = await read_topic(
        ingest_settings.kafka_bootstrap_servers, ingest_settings.activity_topic, expected=6
    )
    ids = [Envelope.from_bytes(r.value).id for r in records]
    assert len(ids) == 6
    assert len(set(ids)) == 3


async def test_a_file_of_many_chunks_is_accepted_whole(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    header = "call_id,customer_id,started_at,outcome,intent,notes\n"
    rows = "".join(
        f"K-{i},c-{i % 50},2025-06-01T10:00:00Z,connected,,note {i}\n" for i in range(2100)
    )

    response = await ingest.post(
        "/v1/imports/calls", files={"file": ("calls.csv", (header + rows).encode(), "text/csv")}
    )

    assert response.status_code == 202
    assert response.json()["accepted"] == 2100
    size = await topic_size(ingest_settings.kafka_bootstrap_servers, ingest_settings.activity_topic)
    assert size == 2100


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"", "no header row", id="empty"),
        pytest.param(b"order_id,amount\n\xff\xfe\xfa,1\n", "not UTF-8", id="not-utf8"),
    ],
)
async def test_unreadable_files_are_refused_and_publish_nothing(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings, content: bytes, message: str
) -> None:
    response = await ingest.post("/v1/imports/orders", files=upload(content))

    assert response.status_code == 422
    assert message in response.json()["detail"]
    size = await topic_size(ingest_settings.kafka_bootstrap_servers, ingest_settings.activity_topic)
    assert size == 0


async def test_a_missing_file_field_is_a_422_naming_it(ingest: httpx.AsyncClient) -> None:
    response = await ingest.post("/v1/imports/orders", data={"other": "x"})

    assert response.status_code == 422
    assert "file" in [e["field"] for e in response.json()["errors"]]
