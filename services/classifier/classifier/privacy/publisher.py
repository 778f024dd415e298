"""The API's one producer: erasure requests go on the activity topic (a replay of the
topic erases at the same point), acknowledged by the broker before the 202."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from classifier.config import ClassifierSettings
from classifier.errors import ClassifierError
from eventschemas.envelope import Envelope

log = logging.getLogger(__name__)


class BrokerUnavailable(ClassifierError):
    status = 503
    slug = "broker-unavailable"
    title = "The event broker is unavailable; nothing was requested, retry later"


class ActivityPublisher:
    """Started on first use; a failed send retires the producer (a new one next time)."""

    def __init__(self, settings: ClassifierSettings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _ensure(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._settings.kafka_bootstrap_servers,
                    enable_idempotence=True,
                    acks="all",
                    request_timeout_ms=10_000,
                )
                try:
                    async with asyncio.timeout(15):
                        await producer.start()
                except (KafkaError, OSError, TimeoutError) as exc:
                    await producer.stop()
                    raise self._unavailable() from exc
                self._producer = producer
            return self._producer

    def _unavailable(self) -> BrokerUnavailable:
        return BrokerUnavailable(
            "the activity topic did not take the request", headers={"Retry-After": "5"}
        )

    async def publish(self, envelope: Envelope) -> None:
        producer = await self._ensure()
        try:
            async with asyncio.timeout(15):
                await producer.send_and_wait(
                    self._settings.activity_topic,
                    value=envelope.to_bytes(),
                    key=envelope.subject.encode(),
                    headers=envelope.kafka_headers(),
                )
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning("erasure request not published: %s", type(exc).__name__)
            async with self._lock:
                if self._producer is producer:
                    self._producer = None
            await producer.stop()
            raise self._unavailable() from exc

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
