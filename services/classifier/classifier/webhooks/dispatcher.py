"""`classifier dispatcher`: turns class changes into webhook deliveries and sends them.

Its own process and consumer group on the class-change topic, so a slow receiver
never holds up classification. For each change that matches an enabled
subscription's filter a delivery row is stored (once per subscription and change:
a record consumed again adds nothing), and the consumed offsets are committed
only after those rows committed; a dispatcher killed at any point loses no
delivery. The delivery loop (classifier.webhooks.delivery) sends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import CommitFailedError, IllegalStateError
from prometheus_client import start_http_server
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.config import ClassifierSettings
from classifier.db import make_engine, make_sessionmaker, unit_of_work
from classifier.models import WebhookSubscription
from classifier.webhooks import repository
from classifier.webhooks.delivery import DeliveryLoop
from classifier.webhooks.metrics import DISPATCHER_REGISTRY, MATCHED
from classifier.webhooks.schemas import ChangeFilter, new_delivery_id
from eventschemas.changes import CHANGE_EVENT_TYPE
from eventschemas.logs import configure_logging

log = logging.getLogger("classifier.dispatcher")


def deliveries_for(
    records: Sequence[ConsumerRecord], subscriptions: Sequence[WebhookSubscription]
) -> list[tuple[Any, ...]]:
    """Delivery rows for the class-change records each subscription's filter matches.

    A subscription receives changes that reached the topic after it was created
    (the record's timestamp), not the topic's history.
    """
    filters = [(s, ChangeFilter.model_validate(s.filter)) for s in subscriptions]
    rows: list[tuple[Any, ...]] = []
    for record in records:
        try:
            event = orjson.loads(record.value)
            if event.get("type") != CHANGE_EVENT_TYPE:
                continue  # customer.merged / customer.erased: not class changes
            change = event["data"]
            change_id, customer_id = str(change["change_id"]), str(change["customer_id"])
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            log.warning("skipping an undecodable record at offset %s", record.offset)
            continue
        changed_at = datetime.fromtimestamp(record.timestamp / 1000, UTC)
        body = record.value.decode()  # the record as on the topic (kept as jsonb)
        for subscription, change_filter in filters:
            if subscription.created_at <= changed_at and change_filter.matches(change):
                row = (new_delivery_id(), subscription.id, change_id, customer_id, body, changed_at)
                rows.append(row)
    return rows


class ChangeConsumer:
    """Consumes the class-change topic as the dispatcher's group; stores deliveries."""

    def __init__(
        self,
        settings: ClassifierSettings,
        sessions: async_sessionmaker[AsyncSession],
        delivery: DeliveryLoop,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._delivery = delivery

    async def run(self, stopping: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            self._settings.class_changes_topic,
            bootstrap_servers=self._settings.kafka_bootstrap_servers,
            group_id=self._settings.webhook_consumer_group,
            enable_auto_commit=False,
            # A new group reads the retained history; only changes newer than each
            # subscription are delivered (deliveries_for), so nothing old is sent.
            auto_offset_reset="earliest",
            session_timeout_ms=self._settings.session_timeout_ms,
            heartbeat_interval_ms=self._settings.heartbeat_interval_ms,
        )
        await consumer.start()
        try:
            while not stopping.is_set():
                batches = await consumer.getmany(
                    timeout_ms=self._settings.poll_timeout_ms,
                    max_records=self._settings.webhook_batch_max_records,
                )
                records = [r for recs in batches.values() for r in recs]
                if not records:
                    continue
                await self._store(records, stopping)
                offsets = {tp: recs[-1].offset + 1 for tp, recs in batches.items()}
                try:
                    await consumer.commit(offsets)  # only after the deliveries committed
                except (CommitFailedError, IllegalStateError) as exc:
                    # A rebalance took the partitions: their new owner reads these
                    # records again, and adds no delivery twice.
                    log.warning("offsets not committed (%s); the records are read again", exc)
        finally:
            await consumer.stop()

    async def _store(self, records: list[ConsumerRecord], stopping: asyncio.Event) -> None:
        """Store the batch's deliveries; retried (never skipped) while the database fails."""
        wait = 0.5
        while True:
            try:
                async with unit_of_work(self._sessions) as session:
                    subscriptions = await repository.list_subscriptions(session, enabled_only=True)
                    rows = deliveries_for(records, subscriptions)
                    added = await repository.add_deliveries(session, rows)
                break
            except Exception:
                if stopping.is_set():
                    raise
                log.exception("storing webhook deliveries failed; retrying in %.1fs", wait)
                await asyncio.sleep(wait)
                wait = min(wait * 2, self._settings.db_retry_max_seconds)
        if added:
            MATCHED.inc(added)
            self._delivery.wake()


async def run_dispatcher(settings: ClassifierSettings, stopping: asyncio.Event) -> None:
    """Run the change consumer and the delivery loop until `stopping` is set."""
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    delivery = DeliveryLoop(settings, sessions)
    consumer = ChangeConsumer(settings, sessions, delivery)
    tasks = [
        asyncio.create_task(consumer.run(stopping), name="webhook-consumer"),
        asyncio.create_task(delivery.run(stopping), name="webhook-delivery"),
    ]
    log.info(
        "webhook dispatcher started (group %s, topic %s)",
        settings.webhook_consumer_group,
        settings.class_changes_topic,
    )
    try:
        stop_requested = asyncio.create_task(stopping.wait())
        await asyncio.wait([*tasks, stop_requested], return_when=asyncio.FIRST_COMPLETED)
        stop_requested.cancel()
        stopping.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for task, result in zip(tasks, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                log.error("%s stopped with %r", task.get_name(), result)
                raise result
    finally:
        await engine.dispose()
        log.info("webhook dispatcher stopped")


def main() -> None:
    settings = ClassifierSettings()
    configure_logging(settings.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per delivery
    if settings.webhook_metrics_port:
        start_http_server(
            settings.webhook_metrics_port, addr=settings.host, registry=DISPATCHER_REGISTRY
        )

    async def _main() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        await run_dispatcher(settings, stopping)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main())


if __name__ == "__main__":
    main()
