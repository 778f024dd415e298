"""`python -m bench.worker`: worker throughput against a raw floor, and publish-to-change latency.

Needs PostgreSQL and Kafka (`make up` or `scripts/stack.sh infra`); every run
uses its own throw-away database and topics.

- drain: M events preloaded into a fresh activity topic; the real worker
  process (`python -m classifier.worker`) is started and timed until its
  consumer group has committed every offset; peak RSS from /proc.
- floor: on the same topic, a minimal aiokafka consumer that decodes each
  event and bulk-upserts one row per customer with asyncpg (no
  classification); the worker's rate is reported as a ratio of it.
- freshness: events published at a fixed rate to a running worker; the delay
  from the broker's acknowledgement to the class change arriving on the
  change topic, p50/p95/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from bench.generate import EVENTS_PER_CUSTOMER, produce, stream
from bench.infra import ROOT, drop_database, dsn, isolated_settings, service_env
from classifier.config import ClassifierSettings
from classifier.topics import ensure_topics
from eventschemas.events import OrderPlaced


async def preload(settings: ClassifierSettings, events: int, seed: int) -> int:
    """Produce `events` realistic events (interleaved in time, with duplicates and late
    arrivals; see bench.generate); returns how many were written."""
    customers = max(1, round(1.25 * events / EVENTS_PER_CUSTOMER))
    generated = stream(seed, customers)
    while len(generated) < events:  # a small population can fall short of the average
        customers *= 2
        generated = stream(seed, customers)
    return await produce(generated[:events], settings)


async def _group_committed(settings: ClassifierSettings, group: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return sum(meta.offset for meta in offsets.values() if meta.offset > 0)
    finally:
        await admin.close()


async def start_worker(
    settings: ClassifierSettings, log: Path | None = None, **extra_env: str
) -> asyncio.subprocess.Process:
    out = log.open("ab") if log else asyncio.subprocess.DEVNULL
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "classifier.worker",
        cwd=ROOT,
        env=service_env(settings, **extra_env),
        stdout=out,
        stderr=asyncio.subprocess.STDOUT,
    )


async def stop_worker(proc: asyncio.subprocess.Process) -> None:
    proc.terminate()
    await asyncio.wait_for(proc.wait(), timeout=60)


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


async def drain(settings: ClassifierSettings, total: int) -> dict[str, Any]:
    """Start the real worker process and time it until every offset is committed."""
    proc = await start_worker(settings)
    started = time.perf_counter()
    first_at: float | None = None
    try:
        while True:
            done = await _group_committed(settings, settings.consumer_group)
            if done and first_at is None:
                first_at = time.perf_counter()
            if done >= total:
                break
            if proc.returncode is not None:
                raise RuntimeError("the worker exited during the benchmark")
            await asyncio.sleep(0.5)
        elapsed = time.perf_counter() - started
        rss = _peak_rss_mb(proc.pid)
    finally:
        await stop_worker(proc)
    return {
        "events": total,
        "seconds": round(elapsed, 2),
        "events_per_s": round(total / elapsed),
        "peak_rss_mb": rss,
        "startup_s": round((first_at or started) - started, 2),
    }


async def raw_floor(settings: ClassifierSettings, total: int) -> dict[str, Any]:
    """Decode each event and upsert one row per customer with asyncpg: no classification."""
    conn = await asyncpg.connect(dsn(settings.database_url))
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS bench_floor "
        "(id text PRIMARY KEY, events int NOT NULL, last jsonb)"
    )
    consumer = AIOKafkaConsumer(
        settings.activity_topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=f"{settings.consumer_group}-floor",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.batch_max_records,
    )
    await consumer.start()
    started = time.perf_counter()
    seen = 0
    try:
        while seen < total:
            batches = await consumer.getmany(timeout_ms=500, max_records=settings.batch_max_records)
            rows: dict[str, tuple[int, str]] = {}
            for records in batches.values():
                for record in records:
                    event = orjson.loads(record.value)
                    count, _ = rows.get(event["subject"], (0, ""))
                    rows[event["subject"]] = (count + 1, orjson.dumps(event["data"]).decode())
                    seen += 1
            if rows:
                async with conn.transaction():
                    await conn.executemany(
                        "INSERT INTO bench_floor (id, events, last) VALUES ($1, $2, $3::jsonb) "
                        "ON CONFLICT (id) DO UPDATE SET events = bench_floor.events + "
                        "excluded.events, last = excluded.last",
                        [(cid, n, last) for cid, (n, last) in rows.items()],
                    )
                await consumer.commit()
        elapsed = time.perf_counter() - started
    finally:
        await consumer.stop()
        await conn.close()
    return {"events": seen, "seconds": round(elapsed, 2), "events_per_s": round(seen / elapsed)}


async def freshness(settings: ClassifierSettings, rate: int, seconds: int) -> dict[str, Any]:
    """Latency from the broker ack of an order to its class change on the change topic."""
    proc = await start_worker(settings)
    consumer = AIOKafkaConsumer(
        settings.class_changes_topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="latest",
        enable_auto_commit=False,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_idempotence=True,
        acks="all",
        linger_ms=1,
    )
    await consumer.start()
    await producer.start()
    acked: dict[str, float] = {}
    arrived: dict[str, float] = {}
    all_arrived = asyncio.Event()
    sending = True

    async def listen() -> None:
        async for record in consumer:
            change = orjson.loads(record.value)["data"]  # a CloudEvent; data is the change
            if change["event_id"] in acked and change["event_id"] not in arrived:
                arrived[change["event_id"]] = time.perf_counter()
                if not sending and len(arrived) == len(acked):
                    all_arrived.set()

    listener = asyncio.create_task(listen())
    try:
        await asyncio.sleep(8)  # let the worker join its group
        placed = datetime.now(UTC) - timedelta(seconds=1)
        for i in range(rate * seconds):
            tick = time.perf_counter()
            envelope = OrderPlaced(
                customer_id=f"fresh-{i}",
                order_id=f"fresh-o{i}",
                amount=Decimal("50"),
                currency="USD",
                amount_base=Decimal("50"),
                base_currency="USD",
                placed_at=placed,
            ).to_envelope("bench")
            await producer.send_and_wait(
                settings.activity_topic,
                envelope.to_bytes(),
                key=envelope.subject.encode(),
                headers=envelope.kafka_headers(),
            )
            acked[envelope.id] = time.perf_counter()
            await asyncio.sleep(max(0.0, 1 / rate - (time.perf_counter() - tick)))
        sending = False
        if len(arrived) < len(acked):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_arrived.wait(), timeout=30)
    finally:
        listener.cancel()
        await producer.stop()
        await consumer.stop()
        await stop_worker(proc)
    delays = sorted((arrived[e] - acked[e]) * 1000 for e in arrived)
    q = statistics.quantiles(delays, n=100) if len(delays) >= 2 else [0.0] * 99
    return {
        "rate_per_s": rate,
        "sent": len(acked),
        "changes_seen": len(arrived),
        "p50_ms": round(q[49], 1),
        "p95_ms": round(q[94], 1),
        "p99_ms": round(q[98], 1),
    }


async def run(events: int, seed: int, rate: int, seconds: int) -> dict[str, Any]:
    base = ClassifierSettings()
    settings = await isolated_settings(base)
    url, tag = settings.database_url, settings.consumer_group
    try:
        await ensure_topics(settings)
        written = await preload(settings, events, seed)
        floor = await raw_floor(settings, written)
        worker = await drain(settings, written)
        fresh_settings = settings.model_copy(
            update={"activity_topic": f"{tag}-fresh", "consumer_group": f"{tag}-fresh"}
        )
        await ensure_topics(fresh_settings)
        fresh = await freshness(fresh_settings, rate, seconds)
    finally:
        await drop_database(base.database_url, url)
    return {
        "benchmark": "worker",
        "cores": os.cpu_count(),
        "seed": seed,
        "activity_partitions": settings.activity_partitions,
        "batch_max_records": settings.batch_max_records,
        "worker": worker,
        "floor": floor,
        "worker_vs_floor": round(worker["events_per_s"] / floor["events_per_s"], 3),
        "freshness": fresh,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rate", type=int, default=200, help="freshness: events per second")
    parser.add_argument("--seconds", type=int, default=10, help="freshness: duration")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    results = asyncio.run(run(args.events, args.seed, args.rate, args.seconds))
    print(json.dumps(results, indent=2))  # noqa: T201 - a command-line tool
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
