"""The AsyncAPI document: the reference parser accepts it, and it describes the wire."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from types import SimpleNamespace

import orjson
import pytest

from eventschemas.changes import ChangeReason, ClassChanged, CustomerMerged
from eventschemas.envelope import STRUCTURED_HEADER
from eventschemas.topics import ACTIVITY_TOPIC, CLASS_CHANGES_TOPIC
from tests.asyncapi_contract import DOCUMENT, AsyncApiContract
from tests.samples import one_of_each_type
from tests.thirdparty.clients import asyncapi_check_command


@pytest.mark.timeout(600)  # the first run installs the parser from npm
def test_the_reference_parser_reports_no_errors_or_warnings() -> None:
    done = subprocess.run(
        [*asyncapi_check_command(), str(DOCUMENT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = orjson.loads(done.stdout)
    serious = [d for d in result["diagnostics"] if d["severity"] <= 1]  # 0 error, 1 warning

    assert result["parsed"], result["diagnostics"]
    assert serious == []


def _record(headers: list[tuple[str, bytes]], value: bytes, key: bytes = b"c-1") -> object:
    return SimpleNamespace(headers=headers, value=value, key=key, offset=0)


def test_every_message_declares_its_headers_and_kafka_key() -> None:
    document = AsyncApiContract().document

    for name, message in document["components"]["messages"].items():
        assert message["headers"]["type"] == "object", name
        assert message["bindings"]["kafka"]["key"]["type"] == "string", name
        assert message.get("contentType"), name


def test_each_event_type_is_its_own_message_with_the_envelope_as_payload() -> None:
    contract = AsyncApiContract()

    for event in one_of_each_type("c-1"):
        envelope = event.to_envelope("shop")
        record = _record(envelope.kafka_headers(), envelope.to_bytes())
        assert contract.message_of(ACTIVITY_TOPIC, record) == event.TYPE


def test_data_alone_or_a_record_without_the_content_type_matches_no_message() -> None:
    contract = AsyncApiContract()
    envelope = one_of_each_type("c-1")[4].to_envelope("shop")

    data_only = _record(envelope.kafka_headers(), orjson.dumps(envelope.data))
    headerless = _record([], envelope.to_bytes())

    for record in (data_only, headerless):
        results = contract.matching_messages(ACTIVITY_TOPIC, record)
        assert all(results.values()), results


def test_a_class_change_is_a_cloudevent_whose_data_is_the_change() -> None:
    change = ClassChanged(
        change_id="ch-1",
        customer_id="c-1",
        dimension="value",
        old_class=None,
        new_class="high",
        scheme_version=1,
        reason=ChangeReason.EVENT,
        event_id="e-1",
        occurred_at=datetime(2026, 11, 1, tzinfo=UTC),
    )
    envelope = change.to_envelope()
    record = _record([STRUCTURED_HEADER, ("change_id", b"ch-1")], envelope.to_bytes())
    bare = _record([STRUCTURED_HEADER, ("change_id", b"ch-1")], orjson.dumps(envelope.data))

    assert AsyncApiContract().message_of(CLASS_CHANGES_TOPIC, record) == "classChanged"
    assert AsyncApiContract().matching_messages(CLASS_CHANGES_TOPIC, bare)["classChanged"]


def test_a_merge_record_matches_its_own_message() -> None:
    merged = CustomerMerged(
        change_id="m-1",
        customer_id="c-1",
        absorbed_ids=["c-2"],
        reason=ChangeReason.MERGE,
        event_id="e-1",
        occurred_at=datetime(2026, 11, 1, tzinfo=UTC),
    )
    record = _record([STRUCTURED_HEADER, ("change_id", b"m-1")], merged.to_envelope().to_bytes())

    assert AsyncApiContract().message_of(CLASS_CHANGES_TOPIC, record) == "customerMerged"
