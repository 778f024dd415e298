"""The worker reads both content modes of the CloudEvents Kafka binding into the same envelope."""

from __future__ import annotations

import pytest
from cloudevents.core.bindings import kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from classifier.consumer.decoding import PoisonMessage, decode
from eventschemas.envelope import Envelope
from tests.samples import one_of_each_type


def _binary(envelope: Envelope, **changes: object) -> kafka.KafkaMessage:
    """The envelope as the CloudEvents SDK's binary mode puts it on Kafka."""
    attributes = envelope.model_dump(mode="json", exclude={"data"})
    attributes.update(changes, time=envelope.time)
    attributes = {k: v for k, v in attributes.items() if v is not None}
    return kafka.to_binary(CloudEvent(attributes, envelope.data), JSONFormat())


@pytest.mark.parametrize("event", one_of_each_type("c-1"), ids=lambda e: e.TYPE)
def test_binary_and_structured_records_decode_to_the_same_event(event: object) -> None:
    envelope = event.to_envelope("shop")  # type: ignore[attr-defined]
    binary = _binary(envelope)
    assert "ce_specversion" in binary.headers
    assert binary.value != envelope.to_bytes()

    from_binary = decode(binary.value, list(binary.headers.items()))
    from_structured = decode(envelope.to_bytes(), envelope.kafka_headers())
    from_headerless = decode(envelope.to_bytes())  # what we produced before the binding

    assert from_binary == from_structured == from_headerless == (envelope, event)


def test_structured_content_type_wins_over_stray_ce_headers() -> None:
    envelope = one_of_each_type("c-1")[0].to_envelope("shop")
    headers = [*envelope.kafka_headers(), ("ce_specversion", b"1.0"), ("ce_type", b"x.y")]

    assert decode(envelope.to_bytes(), headers)[0] == envelope


def test_binary_record_missing_a_required_attribute_is_an_invalid_envelope() -> None:
    envelope = one_of_each_type("c-1")[4].to_envelope("shop")
    message = _binary(envelope)
    headers = [(k, v) for k, v in message.headers.items() if k != "ce_source"]

    with pytest.raises(PoisonMessage) as caught:
        decode(message.value, headers)

    assert caught.value.reason == "invalid_envelope"
    assert "source" in caught.value.detail


def test_binary_record_with_malformed_data_is_invalid_data() -> None:
    message = _binary(one_of_each_type("c-1")[4].to_envelope("shop"))

    with pytest.raises(PoisonMessage) as caught:
        decode(b"{not json", list(message.headers.items()))

    assert caught.value.reason == "invalid_data"


def test_binary_record_is_validated_like_a_structured_one() -> None:
    envelope = one_of_each_type("c-1")[4].to_envelope("shop")
    wrong_type = _binary(envelope, type="order.teleported")
    other_subject = _binary(envelope, subject="someone-else")

    with pytest.raises(PoisonMessage) as unknown:
        decode(wrong_type.value, list(wrong_type.headers.items()))
    with pytest.raises(PoisonMessage) as mismatch:
        decode(other_subject.value, list(other_subject.headers.items()))

    assert unknown.value.reason == "unknown_type"
    assert mismatch.value.reason == "invalid_data"


def test_the_sdks_auto_detecting_reader_takes_our_records_as_structured() -> None:
    envelope = one_of_each_type("c-1")[4].to_envelope("shop")
    ours = kafka.KafkaMessage(
        headers=dict(envelope.kafka_headers()), key=b"c-1", value=envelope.to_bytes()
    )
    # What we produced before: `ce_` headers without `ce_specversion`/`ce_source`.
    before = kafka.KafkaMessage(
        headers={"ce_type": envelope.type.encode(), "ce_id": envelope.id.encode()},
        key=b"c-1",
        value=envelope.to_bytes(),
    )

    event = kafka.from_kafka(ours, JSONFormat())

    assert not any(name.startswith("ce_") for name in ours.headers)
    assert (event.get_id(), event.get_source(), event.get_data()) == (
        envelope.id,
        envelope.source,
        envelope.data,
    )
    with pytest.raises(Exception, match="source"):
        kafka.from_kafka(before, JSONFormat())
