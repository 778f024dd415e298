"""The one place the ingest service talks to Kafka."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
)

from eventschemas.envelope import Envelope
from ingest.config import IngestSettings
from ingest.errors import EventTooLarge, KafkaUnavailable
from ingest.metrics import EVENTS_PUBLISHED, PUBLISH_LATENCY

log = logging.getLogger(__name__)


class EventPublisher:
    """Publishes envelopes keyed by customer; returns only after the broker acknowledged.

    The producer is idempotent with acks=all. When the broker is unreachable, the
    caller gets KafkaUnavailable (503) and nothing is claimed; the next call tries
    to connect again, so the service recovers by itself once Kafka is back.

    A failed publish retires the producer and the next call builds a new one: an
    idempotent producer whose broker restarted keeps failing for good
    (OutOfOrderSequenceNumber, UnknownProducerId), and a new producer id is the
    only cure. Events are never lost by this: the caller was answered 503 and
    their deterministic ids make the retry a duplicate the classifier drops.
    """

    def __init__(self, settings: IngestSettings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Connect eagerly; a broker that is down now is tolerated (readyz says so)."""
        try:
            await self._ensure_producer()
        except KafkaUnavailable:
            log.warning("kafka unreachable at start-up; will retry on demand")

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        for task in list(self._retiring):
            await task

    def _retire(self, producer: AIOKafkaProducer) -> None:
        """Drop this producer (if still current) and close it in the background."""
        retired = producer
        if self._producer is not producer:
            return  # another request retired it already
        self._producer = None
        log.warning("producer retired after a failed publish; the next publish builds a new one")

        async def close() -> None:
            try:
                async with asyncio.timeout(self._settings.publish_timeout_seconds):
                    await retired.stop()
            except (KafkaError, TimeoutError, OSError) as exc:
                log.info("closing the retired producer: %s", type(exc).__name__)

        task = asyncio.create_task(close())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._settings.kafka_bootstrap_servers,
                    enable_idempotence=True,
                    acks="all",
                    linger_ms=2,
                    request_timeout_ms=int(self._settings.publish_timeout_seconds * 1000),
                    compression_type=None,
                )
                try:
                    await producer.start()
                except (KafkaError, OSError) as exc:
                    await producer.stop()
                    raise self._unavailable() from exc
                self._producer = producer
        return self._producer

    def _unavailable(self) -> KafkaUnavailable:
        return KafkaUnavailable(
            "the event broker did not acknowledge the events",
            headers={"Retry-After": str(self._settings.retry_after_seconds)},
        )

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        """Hand envelopes to Kafka and wait until every one is acknowledged."""
        if not envelopes:
            return
        values = [env.to_bytes() for env in envelopes]
        limit = self._settings.max_event_bytes
        for index, value in enumerate(values):
            if len(value) > limit:
                where = f" (item {index})" if len(values) > 1 else ""
                raise EventTooLarge(
                    f"the event{where} is {len(value)} bytes as JSON; one event may be at "
                    f"most {limit} bytes (INGEST_MAX_EVENT_BYTES): nothing was published"
                )
        producer = await self._ensure_producer()
        topic = self._settings.activity_topic
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._settings.publish_timeout_seconds):
                futures = [
                    await producer.send(
                        topic,
                        value=value,
                        key=env.subject.encode(),
                        headers=env.kafka_headers(),
                    )
                    for env, value in zip(envelopes, values, strict=True)
                ]
                await asyncio.gather(*futures)
        except (MessageSizeTooLargeError, RecordTooLargeError) as exc:
            # The broker's limit is below ours: the client must send less, not retry.
            raise EventTooLarge(
                "the broker refused an event as too large (its message.max.bytes is below "
                f"INGEST_MAX_EVENT_BYTES={limit}): nothing was published"
            ) from exc
        except (KafkaError, TimeoutError, OSError) as exc:
            log.warning("publish failed: %s", type(exc).__name__)
            self._retire(producer)
            raise self._unavailable() from exc
        PUBLISH_LATENCY.observe(time.perf_counter() - started)
        for env in envelopes:
            EVENTS_PUBLISHED.labels(type=env.type).inc()

    async def is_ready(self) -> bool:
        """Return whether the broker answers a metadata request now."""
        try:
            producer = await self._ensure_producer()
            async with asyncio.timeout(2):
                await producer.client.fetch_all_metadata()
        except (KafkaUnavailable, KafkaError, TimeoutError, OSError):
            return False
        return True
