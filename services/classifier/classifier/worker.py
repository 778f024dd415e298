"""`python -m classifier.worker`: consumer, outbox relay, review scheduler and job runner.

Stops cleanly on SIGTERM/SIGINT: the batch in flight either commits whole or
rolls back, and offsets are committed only after the database commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from aiokafka import AIOKafkaProducer
from prometheus_client import start_http_server

from classifier.changes.relay import OutboxRelay
from classifier.clock import Clock, system_clock
from classifier.config import ClassifierSettings
from classifier.consumer.identity_lane import IdentityLane
from classifier.consumer.inbox import InboxPruner
from classifier.consumer.progress import PartitionProgress
from classifier.consumer.runner import ActivityConsumer
from classifier.db import make_engine, make_sessionmaker
from classifier.jobs.runner import JobRunner
from classifier.metrics import DB_POOL_IN_USE, DB_POOL_MAX, WORKER_REGISTRY
from classifier.processing.batch import BatchProcessor, IdentityOptions
from classifier.processing.cache import StateCache
from classifier.scheduler import ReviewScheduler
from classifier.schemes.service import SchemeCache, ensure_active_scheme
from eventschemas import collector
from eventschemas.logs import configure_logging

log = logging.getLogger("classifier.worker")


async def run_worker(
    settings: ClassifierSettings,
    stopping: asyncio.Event,
    *,
    clock: Clock | None = None,
    progress: PartitionProgress | None = None,
) -> None:
    """Run consumer, relay, scheduler and job runner until `stopping` is set; `clock` is
    injectable."""
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    DB_POOL_MAX.set(settings.db_pool_size * 2)  # pool_size + max_overflow (db.make_engine)
    pool = engine.sync_engine.pool
    DB_POOL_IN_USE.set_function(lambda: float(pool.checkedout()))  # type: ignore[attr-defined]
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
    )
    try:
        await ensure_active_scheme(sessions, settings.scheme_file)
        await producer.start()
        schemes = SchemeCache()
        processor = BatchProcessor(
            sessions,
            schemes,
            StateCache(settings.state_cache_size),
            IdentityOptions.of(settings),
        )
        progress = progress or PartitionProgress()
        consumer = ActivityConsumer(
            settings, processor, producer, stopping=stopping, progress=progress
        )
        clock = clock or system_clock(settings.clock_offset_seconds, settings.clock_frozen_at)
        scheduler = ReviewScheduler(settings, sessions, processor, schemes, clock, progress)
        # New class changes (a batch, an override, an activation) may bring a review forward.
        relay = OutboxRelay(settings, sessions, producer, on_notify=scheduler.wake)
        # Every customer re-evaluated under a new scheme: its population cut-offs now.
        jobs = JobRunner(
            settings, sessions, processor, clock, on_done=lambda _job: scheduler.request_cutoffs()
        )
        inbox = InboxPruner(settings, sessions, clock)
        relay_stop = asyncio.Event()
        collector.settle()  # startup done: its objects are never walked again
        producers = [
            asyncio.create_task(consumer.run(), name="consumer"),
            asyncio.create_task(scheduler.run(stopping), name="scheduler"),
            asyncio.create_task(jobs.run(stopping), name="jobs"),
            asyncio.create_task(inbox.run(stopping), name="inbox"),
        ]
        if settings.identity_lane:  # its own processor: no state cache shared across tasks
            lane = BatchProcessor(sessions, schemes, identity=IdentityOptions.of(settings))
            producers.append(
                asyncio.create_task(IdentityLane(settings, lane, stopping).run(), name="lane")
            )
        relay_task = asyncio.create_task(relay.run(relay_stop), name="relay")
        tasks = [*producers, relay_task]
        log.info(
            "worker started (group %s, topic %s)", settings.consumer_group, settings.activity_topic
        )
        stop_requested = asyncio.create_task(stopping.wait())
        # Run until asked to stop, or until a task ends (which only happens on failure).
        await asyncio.wait([*tasks, stop_requested], return_when=asyncio.FIRST_COMPLETED)
        stop_requested.cancel()
        # Ordered stop: nothing new is written once consumer and scheduler are
        # done, then the relay drains what they recorded before it exits.
        stopping.set()
        results = await asyncio.gather(*producers, return_exceptions=True)
        relay_stop.set()
        results += await asyncio.gather(relay_task, return_exceptions=True)
        for task, result in zip(tasks, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                log.error("%s stopped with %r", task.get_name(), result)
                raise result
    finally:
        await producer.stop()
        await engine.dispose()
        log.info("worker stopped")


def main() -> None:
    settings = ClassifierSettings()
    configure_logging(settings.log_level)
    if settings.worker_metrics_port:
        start_http_server(
            settings.worker_metrics_port, addr=settings.host, registry=WORKER_REGISTRY
        )

    async def _main() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        await run_worker(settings, stopping)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main())


if __name__ == "__main__":
    main()
