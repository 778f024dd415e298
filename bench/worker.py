"""`python -m bench.worker`: worker throughput against a raw floor, and publish-to-change latency.

Needs PostgreSQL and Kafka (`make up` or `scripts/stack.sh infra`); every run
uses its own throw-away database and topics.

- drain: M events preloaded into a fresh activity topic; the real worker
  process (`python -m classifier.worker`) is started and timed until its
  consumer group has committed every offset; peak RSS from /proc. Then the
  same with two worker processes in one group, into a fresh database.
- idle: the CPU one worker uses over S seconds with nothing to consume
  (/proc/<pid>/stat), once the drain's outbox is relayed.
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
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from bench.generate import EVENTS_PER_CUSTOMER, produce, stream
from bench.infra import (
    ROOT,
    create_database,
    drop_database,
    dsn,
    isolated_settings,
    service_env,
)
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drain(
    settings: ClassifierSettings, total: int, *, processes: int = 1, profile: Path | None = None
) -> dict[str, Any]:
    """Start `processes` real worker processes in one group and time them until every
    offset is committed. `profile`: record the (first) worker with py-spy into this SVG."""
    procs = [await start_worker(settings) for _ in range(processes)]
    spy = None
    if profile is not None:
        spy = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "py-spy"),
            *("record", "--nonblocking", "-r", "50", "-o", str(profile)),
            *(("-f", "raw") if profile.suffix == ".txt" else ()),  # collapsed stacks
            *("--pid", str(procs[0].pid)),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
    started = time.perf_counter()
    first_at: float | None = None
    try:
        while True:
            done = await _group_committed(settings, settings.consumer_group)
            if done and first_at is None:
                first_at = time.perf_counter()
            if done >= total:
                break
            if any(proc.returncode is not None for proc in procs):
                raise RuntimeError("a worker exited during the benchmark")
            await asyncio.sleep(0.5)
        elapsed = time.perf_counter() - started
        rss = max(_peak_rss_mb(proc.pid) for proc in procs)
    finally:
        for proc in procs:
            await stop_worker(proc)
        if spy is not None:
            await asyncio.wait_for(spy.wait(), timeout=120)  # writes the SVG once its target exits
    return {
        "events": total,
        "processes": processes,
        "seconds": round(elapsed, 2),
        "events_per_s": round(total / elapsed),
        "peak_rss_mb": rss,
        "startup_s": round((first_at or started) - started, 2),
    }


async def drain_in_fresh_database(
    settings: ClassifierSettings, total: int, processes: int
) -> dict[str, Any]:
    """`drain` from the start of the same topic into an empty database, with a consumer
    group and change topic of its own (so one run's state never shortens another's)."""
    url = await create_database(settings.database_url, prefix="classifier_bench")
    fresh = settings.model_copy(
        update={
            "database_url": url,
            "consumer_group": f"{settings.consumer_group}-p{processes}",
            "class_changes_topic": f"{settings.class_changes_topic}-p{processes}",
        }
    )
    try:
        await ensure_topics(fresh)
        return await drain(fresh, total, processes=processes)
    finally:
        await drop_database(settings.database_url, url)


async def _pending(url: str) -> int:
    """Work a worker still has: unpublished changes plus customers due for review."""
    conn = await asyncpg.connect(dsn(url))
    try:
        return int(
            await conn.fetchval(
                "SELECT (SELECT count(*) FROM class_changes WHERE published_at IS NULL) "
                "+ (SELECT count(*) FROM customers WHERE next_review_at <= now())"
            )
        )
    finally:
        await conn.close()


async def idle_cpu(settings: ClassifierSettings, seconds: float) -> dict[str, Any]:
    """CPU share of one core a worker uses with nothing to do, over `seconds`.

    Run on a drained topic and database: once the worker has joined its group,
    relayed what was left in the outbox and done the reviews that were due
    (after a drain of historical events, many are), nothing arrives; what it
    burns then is the cost of waiting (polls, heartbeats, the relay, the
    scheduler). `settled` says whether that state was reached, within 15 times
    the measured span (at most 15 min).
    """
    proc = await start_worker(settings)
    try:
        deadline = time.monotonic() + min(900.0, 15 * seconds)
        settled = False
        while time.monotonic() < deadline:
            if not await _pending(settings.database_url):
                settled = True
                break
            await asyncio.sleep(1)
        await asyncio.sleep(10)  # joined the group, relay reconciled, first reads done
        before, t0 = cpu_seconds(proc.pid), time.perf_counter()
        await asyncio.sleep(seconds)
        used, elapsed = cpu_seconds(proc.pid) - before, time.perf_counter() - t0
        if proc.returncode is not None:
            raise RuntimeError("the worker exited while idle")
    finally:
        await stop_worker(proc)
    return {
        "worker_cpu_percent": round(100 * used / elapsed, 2),
        "seconds": seconds,
        "settled": settled,
    }


async def worker_figures(
    settings: ClassifierSettings,
    written: int,
    *,
    idle_seconds: float,
    profile: Path | None = None,
    say: Callable[[str], None] = lambda _message: None,
) -> dict[str, Any]:
    """The raw floor, the drain with 1 and 2 worker processes, and the idle worker:
    the `worker` and `idle` results (the floor of the same run for both ratios)."""
    say("worker: raw floor")
    floor = await raw_floor(settings, written)
    say("worker: draining with one worker process")
    one = await drain(settings, written, profile=profile)
    say("worker: idle worker CPU")
    idle = await idle_cpu(settings, idle_seconds)
    say("worker: draining with two worker processes (a fresh database)")
    two = await drain_in_fresh_database(settings, written, processes=2)
    rate = floor["events_per_s"]
    return {
        "worker": one
        | {
            "floor_events_per_s": rate,
            "vs_floor": round(one["events_per_s"] / rate, 3),
            "processes_2": two | {"vs_floor": round(two["events_per_s"] / rate, 3)},
        },
        "idle": idle,
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


async def run(
    events: int,
    seed: int,
    rate: int,
    seconds: int,
    *,
    idle_seconds: float = 60,
    freshness_too: bool = True,
    profile: Path | None = None,
) -> dict[str, Any]:
    base = ClassifierSettings()
    settings = await isolated_settings(base)
    url, tag = settings.database_url, settings.consumer_group
    try:
        await ensure_topics(settings)
        written = await preload(settings, events, seed)
        figures = await worker_figures(
            settings, written, idle_seconds=idle_seconds, profile=profile, say=_say
        )
        fresh: dict[str, Any] | None = None
        if freshness_too:
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
        **figures,
        "freshness": fresh,
    }


def _say(message: str) -> None:
    sys.stderr.write(f"[bench.worker] {message}\n")
    sys.stderr.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rate", type=int, default=200, help="freshness: events per second")
    parser.add_argument("--seconds", type=int, default=10, help="freshness: duration")
    parser.add_argument(
        "--idle-seconds", type=float, default=60, help="idle: how long to measure the worker's CPU"
    )
    parser.add_argument("--no-freshness", action="store_true", help="only the drains and idle")
    parser.add_argument(
        "--profile",
        type=Path,
        help="record the one-process drain with py-spy (pip install py-spy) into this SVG "
        "(or .txt: collapsed stacks)",
    )
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    results = asyncio.run(
        run(
            args.events,
            args.seed,
            args.rate,
            args.seconds,
            idle_seconds=args.idle_seconds,
            freshness_too=not args.no_freshness,
            profile=args.profile,
        )
    )
    print(json.dumps(results, indent=2))  # noqa: T201 - a command-line tool
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
