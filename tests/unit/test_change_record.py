"""The relay's hand-built change records are exactly what the ClassChanged contract says:
a CloudEvent whose `data` is the ClassChanged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from classifier.changes.relay import RECORD_COLUMNS, encode_record
from eventschemas.changes import (
    CHANGE_EVENT_TYPE,
    ERASED_EVENT_TYPE,
    MERGED_EVENT_TYPE,
    ChangeReason,
    ClassChanged,
    CustomerErased,
    CustomerMerged,
)
from eventschemas.envelope import Envelope


@pytest.mark.parametrize(
    "occurred_at",
    [
        datetime(2026, 11, 22, 11, 6, 24, 132282, tzinfo=UTC),
        datetime(2026, 11, 22, 11, 6, 24, tzinfo=UTC),  # no microseconds
        datetime(2026, 11, 22, 19, 6, 24, 5, tzinfo=timezone(timedelta(hours=8))),
    ],
)
@pytest.mark.parametrize(("old_class", "event_id"), [(None, None), ("regular", "evt-1")])
def test_encoded_record_equals_the_contract_envelope(
    occurred_at: datetime, old_class: str | None, event_id: str | None
) -> None:
    values = (
        "7f1c0b9e-0000-5000-8000-000000000001", "cust-42", "purchase_behavior", old_class,
        "churned", 3, "time", event_id, "no_purchase_for_a_year", occurred_at,
    )  # fmt: skip
    assert len(values) == len(RECORD_COLUMNS)
    expected = ClassChanged(
        change_id=values[0],
        customer_id="cust-42",
        dimension="purchase_behavior",
        old_class=old_class,
        new_class="churned",
        scheme_version=3,
        reason=ChangeReason.TIME,
        event_id=event_id,
        rule="no_purchase_for_a_year",
        occurred_at=occurred_at,
    )

    encoded = encode_record(values)

    assert orjson.loads(encoded) == expected.to_envelope().model_dump(mode="json")
    envelope = Envelope.from_bytes(encoded)
    assert (envelope.type, envelope.id, envelope.subject) == (
        CHANGE_EVENT_TYPE,
        values[0],
        "cust-42",
    )
    assert envelope.time == occurred_at
    assert ClassChanged.model_validate(envelope.data) == expected


def test_a_merge_record_is_the_customer_merged_contract() -> None:
    """An outbox row in the `@merged` pseudo-dimension goes out as `customer.merged`."""
    at = datetime(2026, 11, 22, 11, 6, 24, 132282, tzinfo=UTC)
    values = ("m-1", "cust-1", "@merged", None, "merged", 0, "merge", "evt-9", "cust-2", at)
    expected = CustomerMerged(
        change_id="m-1",
        customer_id="cust-1",
        absorbed_ids=["cust-2"],
        reason=ChangeReason.MERGE,
        event_id="evt-9",
        occurred_at=at,
    )

    encoded = encode_record(values)

    assert orjson.loads(encoded) == expected.to_envelope().model_dump(mode="json")
    assert Envelope.from_bytes(encoded).type == MERGED_EVENT_TYPE


def test_an_erasure_record_is_the_customer_erased_contract() -> None:
    """An outbox row in the `@erased` pseudo-dimension goes out as `customer.erased`."""
    at = datetime(2026, 11, 22, 11, 6, 24, tzinfo=UTC)
    erasure = "0b9d6f0e-1f5c-4d59-9a53-5b2f0e7c3a11"
    values = ("e-1", "cust-1", "@erased", None, "erased", 0, "erasure", "evt-3", erasure, at)
    expected = CustomerErased(
        change_id="e-1",
        customer_id="cust-1",
        erasure_id=erasure,
        reason=ChangeReason.ERASURE,
        event_id="evt-3",
        occurred_at=at,
    )

    encoded = encode_record(values)

    assert orjson.loads(encoded) == expected.to_envelope().model_dump(mode="json")
    assert Envelope.from_bytes(encoded).type == ERASED_EVENT_TYPE
