"""Our topics read by third-party CloudEvents clients, and their default mode accepted.

What a consumer team does with its own stack: the Python `cloudevents` SDK's
auto-detecting `from_kafka`, and a Java consumer with kafka-clients and the
CloudEvents SDK's `CloudEventDeserializer`, read every activity type and every
class change; each record matches what the AsyncAPI document declares for its
channel; and an event produced in binary mode (the SDKs' default) is
classified exactly like the same event in structured mode.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from cloudevents.core.bindings import kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.config import ClassifierSettings
from classifier.models import ClassChange, Customer, ProcessedEvent
from classifier.worker import run_worker
from eventschemas.changes import CHANGE_EVENT_TYPE
from eventschemas.envelope import Envelope
from eventschemas.events import OrderPlaced
from ingest.config import IngestSettings
from ingest.publisher import EventPublisher
from tests.asyncapi_contract import AsyncApiContract
from tests.kafka_helpers import eventually, read_topic
from tests.samples import one_of_each_type
from tests.thirdparty.clients import java_reader_command

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
async def worker(
    classifier_settings: ClassifierSettings, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[None]:
    stopping = asyncio.Event()
    task = asyncio.create_task(run_worker(classifier_settings, stopping))
    yield
    stopping.set()
    await asyncio.wait_for(task, timeout=30)


def binary_message(envelope: Envelope, **changes: Any) -> kafka.KafkaMessage:
    """`envelope` as the CloudEvents Python SDK writes it in binary mode (`to_binary`)."""
    attributes = {**envelope.model_dump(mode="json", exclude={"data"}), **changes}
    attributes["time"] = envelope.time
    return kafka.to_binary(CloudEvent(attributes, envelope.data), JSONFormat())


async def produce_binary(bootstrap: str, topic: str, messages: list[kafka.KafkaMessage]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for message in messages:
            subject = message.headers["ce_subject"]
            await producer.send_and_wait(
                topic, value=message.value, key=subject, headers=list(message.headers.items())
            )
    finally:
        await producer.stop()


@dataclass
class Wire:
    envelopes: list[Envelope]  # what ingest published (structured), one of each type
    binary: Envelope  # produced in binary mode by the SDK
    activity: list[Any]
    changes: list[Any]
    dead: list[Any]


async def all_on_the_wire(
    classifier_settings: ClassifierSettings,
    ingest_settings: IngestSettings,
    sessions: async_sessionmaker[AsyncSession],
) -> Wire:
    """Every activity type through ingest's publisher, a binary-mode event and a binary poison,
    applied by the worker; returns what is then on the three topics."""
    bootstrap = classifier_settings.kafka_bootstrap_servers
    envelopes = [e.to_envelope("shop") for e in one_of_each_type("ce-1", now=NOW)]
    publisher = EventPublisher(ingest_settings)
    await publisher.start()
    try:
        await publisher.publish(envelopes)
    finally:
        await publisher.stop()
    binary = envelopes[4].model_copy(
        update={
            "id": "bin-1",
            "subject": "ce-bin",
            "data": {**envelopes[4].data, "customer_id": "ce-bin"},
        }
    )
    poison = binary_message(binary, id="bin-2", type="order.teleported")
    await produce_binary(
        bootstrap, classifier_settings.activity_topic, [binary_message(binary), poison]
    )

    async def applied() -> bool:
        # Every event but the poison is applied (the identity lane may apply the merges
        # before the events published ahead of them), and every change is out.
        async with sessions() as session:
            one = await session.get(Customer, "ce-1")
            two = await session.get(Customer, "ce-bin")
            inbox = await session.scalar(select(func.count()).select_from(ProcessedEvent))
            unpublished = await session.scalar(
                select(func.count())
                .select_from(ClassChange)
                .where(ClassChange.published_at.is_(None))
            )
        # The binary one is in, the erasure request keeps no trace of itself: as many rows
        # as ingest published.
        return bool(one and two and inbox == len(envelopes) and not unpublished)

    await eventually(applied, within=60)
    async with sessions() as session:
        change_count = int(await session.scalar(select(func.count()).select_from(ClassChange)) or 0)
    return Wire(
        envelopes=envelopes,
        binary=binary,
        activity=await read_topic(
            bootstrap, classifier_settings.activity_topic, expected=len(envelopes) + 2
        ),
        changes=await read_topic(
            bootstrap, classifier_settings.class_changes_topic, expected=change_count
        ),
        dead=await read_topic(bootstrap, classifier_settings.dlq_topic, expected=1),
    )


def _sdk_read(record: Any) -> Any:
    message = kafka.KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value)
    return kafka.from_kafka(message, JSONFormat())


async def test_python_sdk_reads_every_activity_type_and_every_class_change(
    worker: None,
    classifier_settings: ClassifierSettings,
    ingest_settings: IngestSettings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    wire = await all_on_the_wire(classifier_settings, ingest_settings, sessions)
    assert len(wire.activity) == len(wire.envelopes) + 2  # + a binary event and a poison
    assert len(wire.changes) >= 9 * 2  # at least one change per dimension, per customer

    read = {e.get_id(): e for e in map(_sdk_read, wire.activity)}
    for envelope in [*wire.envelopes, wire.binary]:
        event = read[envelope.id]
        assert (event.get_type(), event.get_source(), event.get_subject()) == (
            envelope.type,
            envelope.source,
            envelope.subject,
        )
        assert event.get_time() == envelope.time
        assert event.get_dataschema() == envelope.dataschema
        assert event.get_data() == envelope.data
    assert read["bin-2"].get_type() == "order.teleported"  # the poison, for completeness

    for record in wire.changes:
        change = _sdk_read(record)
        assert change.get_type() == CHANGE_EVENT_TYPE
        assert change.get_id() == change.get_data()["change_id"]
        assert change.get_subject() == record.key.decode() == change.get_data()["customer_id"]
        assert change.get_time() == datetime.fromisoformat(change.get_data()["occurred_at"])
    assert {_sdk_read(r).get_subject() for r in wire.changes} == {"ce-1", "ce-bin"}


async def test_every_record_matches_its_channel_in_the_asyncapi_document(
    worker: None,
    classifier_settings: ClassifierSettings,
    ingest_settings: IngestSettings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    wire = await all_on_the_wire(classifier_settings, ingest_settings, sessions)
    contract = AsyncApiContract()
    ours = {e.id for e in wire.envelopes}  # the binary ones are the SDK's, not ours

    produced = [r for r in wire.activity if dict(r.headers).get("event_id", b"").decode() in ours]
    assert len(produced) == len(wire.envelopes)
    # By event id: the samples' subjects are not all one customer (nor one partition).
    matched = {
        dict(r.headers)["event_id"].decode(): contract.message_of("customer-activity.v1", r)
        for r in produced
    }
    assert matched == {e.id: e.type for e in wire.envelopes}
    assert wire.changes
    assert {contract.message_of("customer-class-changes.v1", r) for r in wire.changes} == {
        "classChanged"
    }
    assert [contract.message_of("customer-activity.dlq.v1", r) for r in wire.dead] == ["deadLetter"]
    [dead] = wire.dead
    headers = dict(dead.headers)
    assert headers["dlq_reason"] == b"unknown_type"
    assert headers["ce_type"] == b"order.teleported"  # a binary event keeps its attributes
    assert headers["ce_id"] == b"bin-2"


@pytest.mark.timeout(900)  # the first run fetches the jars from Maven Central
async def test_java_cloudevents_sdk_reads_both_topics(
    worker: None,
    classifier_settings: ClassifierSettings,
    ingest_settings: IngestSettings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    command = await asyncio.to_thread(java_reader_command)
    wire = await all_on_the_wire(classifier_settings, ingest_settings, sessions)

    async def java_read(topic: str, expected: int) -> list[dict[str, Any]]:
        proc = await asyncio.create_subprocess_exec(
            *command,
            classifier_settings.kafka_bootstrap_servers,
            topic,
            str(expected),
            "60",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        assert proc.returncode == 0, err.decode()[-3000:]
        return [orjson.loads(line) for line in out.splitlines() if line.startswith(b"{")]

    activity = await java_read(classifier_settings.activity_topic, len(wire.activity))
    changes = await java_read(classifier_settings.class_changes_topic, len(wire.changes))

    assert [line for line in activity + changes if "error" in line] == []
    assert len(activity) == len(wire.activity)
    # The running worker may announce more (a review falling due) after the snapshot:
    # every change of the snapshot is read, and nothing the SDK read is malformed.
    assert {line["id"] for line in changes} >= {orjson.loads(r.value)["id"] for r in wire.changes}
    by_id = {line["id"]: line for line in activity}
    for envelope in [*wire.envelopes, wire.binary]:
        line = by_id[envelope.id]
        assert line["specversion"] == "1.0"
        assert (line["type"], line["source"], line["subject"], line["key"]) == (
            envelope.type,
            envelope.source,
            envelope.subject,
            envelope.subject,
        )
        assert datetime.fromisoformat(line["time"]) == envelope.time
        assert line["dataschema"] == envelope.dataschema
        assert line["data"] == envelope.data
    for line in changes:
        assert line["type"] == CHANGE_EVENT_TYPE
        assert line["id"] == line["data"]["change_id"]
        assert line["subject"] == line["key"] == line["data"]["customer_id"]


async def test_a_binary_mode_event_is_classified_like_a_structured_one(
    worker: None,
    classifier_settings: ClassifierSettings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    def order(customer: str) -> Envelope:
        return OrderPlaced(
            customer_id=customer,
            order_id=f"{customer}-o-1",  # event ids come from the order id: one each
            amount=Decimal("250.00"),
            currency="USD",
            amount_base=Decimal("250.00"),
            base_currency="USD",
            placed_at=NOW - timedelta(days=3),
        ).to_envelope("shop")

    structured, binary = order("mode-structured"), order("mode-binary")
    bootstrap = classifier_settings.kafka_bootstrap_servers
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            classifier_settings.activity_topic,
            value=structured.to_bytes(),
            key=structured.subject.encode(),
            headers=structured.kafka_headers(),
        )
    finally:
        await producer.stop()
    message = binary_message(binary)
    assert "ce_specversion" in message.headers
    assert orjson.loads(message.value) == binary.data
    await produce_binary(bootstrap, classifier_settings.activity_topic, [message])

    async def both() -> tuple[Customer, Customer] | None:
        async with sessions() as session:
            a = await session.get(Customer, "mode-structured")
            b = await session.get(Customer, "mode-binary")
        return (a, b) if a and b else None

    a, b = await eventually(both, within=30)
    assert b.last_event_id == binary.id
    assert (b.order_count, b.net_revenue, b.last_order_at) == (
        a.order_count,
        a.net_revenue,
        a.last_order_at,
    )
    assert b.order_count == 1
    assert {d: c["class"] for d, c in b.classes.items()} == {
        d: c["class"] for d, c in a.classes.items()
    }
    assert b.classes["purchase_behavior"]["class"] == "occasional"
    records = await read_topic(bootstrap, classifier_settings.dlq_topic, expected=1, within=2)
    assert records == []
