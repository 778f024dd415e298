"""The one place the ingest service talks to Kafka."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from eventschemas.envelope import Envelope
from ingest.config import IngestSettings
from ingest.errors import KafkaUnavailable
from ingest.metrics import EVENTS_PUBLISHED, PUBLISH_LATENCY

log = logging.getLogger(__name__)


class EventPublisher:
    """Publishes envelopes keyed by customer; returns only after the broker acknowledged.

    The producer is idempotent with acks=all. When the broker is unreachable, the
    caller gets KafkaUnavailable (503) and nothing is claimed; the next call tries
    to connect again, so the service recovers by itself once Kafka is back.
    """

    def __init__(self, settings: IngestSettings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

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
        producer = await self._ensure_producer()
        topic = self._settings.activity_topic
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._settings.publish_timeout_seconds):
                futures = [
                    await producer.send(
                        topic,
                        value=env.to_bytes(),
                        key=env.subject.encode(),
                        headers=env.kafka_headers(),
                    )
                    for env in envelopes
                ]
                await asyncio.gather(*futures)
        except (KafkaError, TimeoutError, OSError) as exc:
            log.warning("publish failed: %s", type(exc).__name__)
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
