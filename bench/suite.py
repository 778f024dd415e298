"""`python -m bench` (`make bench`): every benchmark scenario in one run, one table, one JSON.

Needs PostgreSQL and Kafka (`make bench` starts them if they are down). The run
gets its own throw-away database and topics, and real service processes
(uvicorn, `python -m classifier.worker`) on spare ports.

1. worker: M generated events (interleaved in time, 1% duplicates, 2% late)
   preloaded into a fresh activity topic; the raw floor (decode + one asyncpg
   upsert per customer, no classification) and then the real worker drain
   them, with one worker process and (into a fresh database) with two in one
   group; events/s, peak RSS, and worker/floor for both. Then the idle worker:
   its CPU over 60 s (5 s at scale smoke: `idle.seconds`) with nothing to do.
2. lookups: single customer lookups at concurrency 32 and 1,000-id bulk
   lookups on the database the worker just loaded.
3. activation: a changed scheme (regular buyers need 3 orders a year, not 4)
   uploaded and activated through the API on N customers (the loaded ones,
   copied in SQL up to N; `--activation-customers 1000000` for a million); the
   API queues the job and a running worker process (`python -m
   classifier.worker`, started and idle beforehand) runs it; wall time from the
   request until the activation resource says `succeeded`.
4. intake: accepted events/s through the single and batch ingest endpoints.
5. freshness + time-driven: orders posted to the ingest API at a fixed rate
   while a worker runs; delay from the HTTP 202 to the class change on the
   change topic, and the CPU each component (ingest, worker, PostgreSQL,
   Kafka, this load generator) spent per accepted event meanwhile. Under that
   load, customers whose `purchase_behavior` turns `churned` at a known
   instant (`next_review_at`, read from the database) are watched: lag from
   that instant to the change on the topic.
6. engine: evaluations/s of the default scheme on one core (`taskset -c 1`),
   with its floor (bench/engine.py).
7. history growth: ms to apply one new order to customers who already have
   10, 1,000 and 10,000 orders, and their stored state (bench/history.py).
8. webhooks: class changes published at `webhook_rate`/s to a fresh class-change
   topic, delivered by a dispatcher process to a local receiver that verifies
   each signature; deliveries/s and publish -> 200 p50/p99, and a bare signing
   httpx client's POSTs/s as the floor (bench/webhooks.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer

from bench import cpu as bench_cpu
from bench import erasures as bench_erasures
from bench import history as bench_history
from bench import http as bench_http
from bench import loadgen
from bench import merges as bench_merges
from bench import webhooks as bench_webhooks
from bench import worker as bench_worker
from bench.generate import produce
from bench.infra import (
    ROOT,
    customer_columns,
    drop_database,
    dsn,
    isolated_settings,
    service_env,
)
from classifier.auth import INTAKE_SCOPES, create_key
from classifier.config import ClassifierSettings
from classifier.db import make_engine, make_sessionmaker
from classifier.engine import default_scheme_text
from classifier.topics import ensure_topics
from eventschemas.events import OrderPlaced

SCALES: dict[str, dict[str, Any]] = {
    # The suite's smoke test runs this one: everything, tiny.
    "smoke": {
        "worker_events": 400, "lookups": 200, "bulk_requests": 3, "activation_customers": 300,
        "intake_single": 100, "intake_batches": 2, "fresh_rate": 20, "fresh_seconds": 2,
        "timed_customers": 5, "engine_customers": 200, "engine_rounds": 1,
        "history_sizes": (10, 30, 100), "history_customers": 2, "history_rounds": 2,
        "idle_seconds": 5,  # idle CPU over 5 s only: a smoke figure, not the 60 s one
        "merge_pairs": 3, "merge_large_orders": 20, "erasure_customers": 2, "erasure_facts": 20,
        "webhook_changes": 50, "webhook_rate": 50,
    },
    "small": {
        "worker_events": 50_000, "lookups": 2_000, "bulk_requests": 10,
        "activation_customers": 10_000, "intake_single": 1_000, "intake_batches": 10,
        "fresh_rate": 1_000, "fresh_seconds": 10, "timed_customers": 50,
        "engine_customers": 2_000, "engine_rounds": 3, "idle_seconds": 60,
        "history_sizes": bench_history.SIZES, "history_customers": 5, "history_rounds": 3,
        "merge_pairs": 20, "merge_large_orders": 1_000, "erasure_customers": 3,
        "erasure_facts": 2_000, "webhook_changes": 5_000, "webhook_rate": 1_000,
    },
    "large": {
        "worker_events": 500_000, "lookups": 10_000, "bulk_requests": 20,
        "activation_customers": 100_000, "intake_single": 5_000, "intake_batches": 40,
        "fresh_rate": 1_000, "fresh_seconds": 30, "timed_customers": 200,
        "engine_customers": 5_000, "engine_rounds": 5, "idle_seconds": 60,
        "history_sizes": bench_history.SIZES, "history_customers": bench_history.CUSTOMERS,
        "history_rounds": bench_history.ROUNDS, "merge_pairs": 50, "merge_large_orders": 1_000,
        "erasure_customers": 3, "erasure_facts": 10_000, "webhook_changes": 30_000,
        "webhook_rate": 1_000,
    },
}  # fmt: skip
CONCURRENCY = 32
CHANGED_SCHEME = ("- {feature: orders_365d, gte: 4}", "- {feature: orders_365d, gte: 3}")


async def _sample_ids(url: str, n: int) -> list[str]:
    conn = await asyncpg.connect(dsn(url))
    try:
        rows = await conn.fetch("SELECT id FROM customers ORDER BY md5(id) LIMIT $1", n)
    finally:
        await conn.close()
    return [r["id"] for r in rows]


async def lookups(api_url: str, key: str, db_url: str, p: dict[str, int]) -> dict[str, Any]:
    ids = await _sample_ids(db_url, 20_000)
    headers = {"Authorization": f"Bearer {key}"}

    def one(i: int) -> loadgen.Request:
        return loadgen.Request("GET", f"/v1/customers/{ids[(i * 7919) % len(ids)]}")

    await loadgen.run(api_url, one, min(500, p["lookups"]), CONCURRENCY, headers)  # warm-up
    wall, lat = await loadgen.run(api_url, one, p["lookups"], CONCURRENCY, headers)
    # A customer's periods, and its classes at an instant in the loaded history.
    reads = max(1, p["lookups"] // 2)
    _, history = await loadgen.run(
        api_url,
        lambda i: loadgen.Request("GET", f"/v1/customers/{ids[(i * 7919) % len(ids)]}/history"),
        reads,
        CONCURRENCY,
        headers,
    )
    as_of = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30)
    instant = as_of.strftime("%Y-%m-%dT%H:%M:%SZ")
    _, past = await loadgen.run(
        api_url,
        lambda i: loadgen.Request(
            "GET", f"/v1/customers/{ids[(i * 7919) % len(ids)]}/classes?as_of={instant}"
        ),
        reads,
        CONCURRENCY,
        headers,
    )
    body = orjson.dumps({"ids": [ids[(k * 104729) % len(ids)] for k in range(1000)]})
    _, bulk = await loadgen.run(
        api_url,
        lambda i: loadgen.Request("POST", "/v1/customers:lookup", body),
        p["bulk_requests"],
        1,
        headers,
    )
    return {
        "customers_in_db": await _count(db_url),
        "single_requests": p["lookups"],
        "concurrency": CONCURRENCY,
        "single_rps": round(p["lookups"] / wall),
        "single_p50_ms": round(bench_http.pct(lat, 0.5) * 1000, 1),
        "single_p99_ms": round(bench_http.pct(lat, 0.99) * 1000, 1),
        "bulk_ids": min(1000, len(ids)),
        "bulk_p50_ms": round(bench_http.pct(bulk, 0.5) * 1000, 1),
        "bulk_p99_ms": round(bench_http.pct(bulk, 0.99) * 1000, 1),
        "history_p99_ms": round(bench_http.pct(history, 0.99) * 1000, 1),
        "as_of_p99_ms": round(bench_http.pct(past, 0.99) * 1000, 1),
        "history_requests": reads,
    }


async def _count(url: str) -> int:
    conn = await asyncpg.connect(dsn(url))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM customers"))
    finally:
        await conn.close()


async def grow_population(url: str, target: int) -> int:
    """Copy existing customers (facts, classes) under new ids until there are `target`."""
    conn = await asyncpg.connect(dsn(url))
    try:
        have = int(await conn.fetchval("SELECT count(*) FROM customers"))
        need = target - have
        if need <= 0 or have == 0:
            return have
        columns = await customer_columns(conn)
        cols = ", ".join(columns)
        async with conn.transaction():
            await conn.execute(
                "CREATE TEMP TABLE copies ON COMMIT DROP AS SELECT 'copy' || g || '-' || c.id "
                "AS id, c.id AS src FROM generate_series(1, $1::int) g CROSS JOIN customers c "
                "LIMIT $2",
                -(-need // have),
                need,
            )
            await conn.execute(
                f"INSERT INTO customers (id, {cols}) SELECT k.id, "
                + ", ".join(f"c.{column}" for column in columns)
                + " FROM copies k JOIN customers c ON c.id = k.src"
            )
            await conn.execute(
                "INSERT INTO customer_classes (customer_id, dimension, class, since, "
                "scheme_version) SELECT k.id, cc.dimension, cc.class, cc.since, cc.scheme_version "
                "FROM copies k JOIN customer_classes cc ON cc.customer_id = k.src"
            )
        await conn.execute("ANALYZE customers")
        return int(await conn.fetchval("SELECT count(*) FROM customers"))
    finally:
        await conn.close()


async def activation(api_url: str, admin_key: str) -> dict[str, Any]:
    """Upload a changed scheme, activate it, and time the job a worker runs until it is done."""
    source = default_scheme_text()
    assert CHANGED_SCHEME[0] in source, "the default scheme changed; update CHANGED_SCHEME"
    source = source.replace(*CHANGED_SCHEME)
    headers = {"Authorization": f"Bearer {admin_key}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=60) as client:
        draft = await client.post(
            "/v1/schemes", content=source, headers={"content-type": "application/yaml"}
        )
        draft.raise_for_status()
        version = draft.json()["version"]
        started = time.perf_counter()
        response = await client.post(f"/v1/schemes/{version}/activate", json={"silent": False})
        response.raise_for_status()
        location = f"/v1/activations/{response.json()['id']}"
        while True:
            state = (await client.get(location)).json()
            if state["status"] not in ("queued", "running"):
                break
            await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - started
    if state["status"] != "succeeded":
        raise RuntimeError(f"activation failed: {state}")
    claimed = datetime.fromisoformat(state["claimed_at"])
    worker_seconds = (datetime.fromisoformat(state["finished_at"]) - claimed).total_seconds()
    return {
        "customers": state["done"],
        "seconds": round(elapsed, 1),
        "customers_per_s": round(state["done"] / elapsed),
        "worker_seconds": round(worker_seconds, 1),
        "changes": state["changes"],
        "chunk_size": ClassifierSettings().job_chunk_size,
    }


def _read(log: Path) -> bytes:
    return log.read_bytes() if log.exists() else b""


async def _worker_started(log: Path, proc: asyncio.subprocess.Process) -> None:
    """Wait until a worker process logs that its tasks run (imports and broker joined)."""
    deadline = time.monotonic() + 120
    while b"worker started" not in await asyncio.to_thread(_read, log):
        if proc.returncode is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the activation worker did not start; see {log}")
        await asyncio.sleep(0.2)


async def _post_at_rate(
    url: str, key: str, rate: int, seconds: int, run: str, connections: int = 64
) -> tuple[dict[str, float], int]:
    """Open-loop: one order per 1/rate s over a pool of keep-alive connections; returns
    {event id: wall time of its 202} and how many requests were late to start."""
    acked: dict[str, float] = {}
    authorization = f"Authorization: Bearer {key}\r\n"
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    host, port = url.removeprefix("http://").split(":")
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection(host, int(port)))
    placed = datetime.now(UTC) - timedelta(seconds=1)
    behind = 0

    async def send(i: int) -> None:
        body = orjson.dumps(
            {
                "order_id": f"{run}-o{i}",
                "customer_id": f"{run}-c{i}",
                "amount": "50",
                "currency": "USD",
                "placed_at": placed.isoformat(),
            }
        )
        request = loadgen.Request("POST", "/v1/orders", body)
        reader, writer = await pool.get()
        try:
            status, answer = await loadgen.exchange(
                reader,
                writer,
                loadgen.head(request, host, authorization),
                body,
            )
            if status == 202:
                acked[orjson.loads(answer)["event_ids"][0]] = time.time()
        finally:
            pool.put_nowait((reader, writer))

    tasks = []
    start = time.perf_counter()
    for i in range(rate * seconds):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.05:
            behind += 1
        tasks.append(asyncio.create_task(send(i)))
    await asyncio.gather(*tasks)
    while not pool.empty():
        pool.get_nowait()[1].close()
    return acked, behind


async def _timed_customers(
    settings: ClassifierSettings, count: int, lead: float
) -> dict[str, float]:
    """Customers with one order 365 days minus `lead`..2*`lead` seconds ago; returns the
    instant (epoch s) each one's `purchase_behavior` turns `churned` under the default
    scheme (`recency_days < 365` is `occasional`, then `churned`)."""
    now = datetime.now(UTC)
    events = [
        OrderPlaced(
            customer_id=f"timed-{k}",
            order_id=f"timed-o{k}",
            amount=Decimal("80"),
            currency="USD",
            amount_base=Decimal("80"),
            base_currency="USD",
            placed_at=now - timedelta(days=365) + timedelta(seconds=lead * (1 + k / count)),
        )
        for k in range(count)
    ]
    await produce(list(events), settings)
    return {e.customer_id: (e.placed_at + timedelta(days=365)).timestamp() for e in events}


async def _wait_for_customers(url: str, ids: list[str]) -> None:
    conn = await asyncpg.connect(dsn(url))
    try:
        for _ in range(1200):
            found = await conn.fetchval(
                "SELECT count(*) FROM customers WHERE id = ANY($1::text[])", ids
            )
            if found == len(ids):
                return
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    raise RuntimeError("the worker did not classify the time-driven customers in 60 s")


async def freshness_and_time(
    settings: ClassifierSettings,
    ingest_url: str,
    intake_key: str,
    p: dict[str, int],
    log: Path | None = None,
    merges: bench_merges.MergeBench | None = None,
    erasures: bench_erasures.ErasureBench | None = None,
    ingest: asyncio.subprocess.Process | None = None,
) -> dict[str, Any]:
    worker = await bench_worker.start_worker(settings, log)
    # Where the CPU goes while the load is offered and worked off, per accepted event.
    components = {
        "worker": bench_cpu.family(worker.pid),
        "postgres": bench_cpu.postgres,
        "kafka": bench_cpu.kafka,
        "load_generator": bench_cpu.this_process,
    }
    if ingest is not None:
        components["ingest"] = bench_cpu.family(ingest.pid)
    meter = bench_cpu.CpuMeter(components)
    cpu: dict[str, float] = {}
    consumer = AIOKafkaConsumer(
        settings.class_changes_topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    arrivals: dict[str, float] = {}  # event id -> first change seen
    time_changes: dict[str, float] = {}  # timed customer -> first reason=time change seen
    due: dict[str, float] = {}  # timed customer -> instant it turns churned (epoch s)

    async def listen() -> None:
        async for record in consumer:
            change = orjson.loads(record.value)["data"]  # a CloudEvent; data is the change
            seen = time.time()
            if change.get("event_id") and change["event_id"] not in arrivals:
                arrivals[change["event_id"]] = seen
            if (
                change["reason"] == "time"
                and change["dimension"] == "purchase_behavior"
                and change["new_class"] == "churned"
                and change["customer_id"] in due  # loaded customers may come due too
            ):
                time_changes.setdefault(change["customer_id"], seen)

    listener = asyncio.create_task(listen())
    try:
        while not consumer.assignment():  # noqa: ASYNC110 (aiokafka offers no event)
            await asyncio.sleep(0.1)
        large_ms: float | None = None
        if merges is not None:  # seeded and the large merge timed before the load
            await merges.seed()
            await merges.wait_seeded()
            large_ms = await merges.large_ms()
        if erasures is not None:
            await erasures.seed()
        lead = max(15.0, p["fresh_seconds"] / 2)  # the worker must see them before they are due
        due.update(await _timed_customers(settings, p["timed_customers"], lead))
        await _wait_for_customers(settings.database_url, list(due))  # the worker is consuming
        run = uuid.uuid4().hex[:6]
        meter.start()
        started = time.perf_counter()
        merging = asyncio.create_task(merges.under_load(p["fresh_seconds"])) if merges else None
        erasing = asyncio.create_task(erasures.under_load(p["fresh_seconds"])) if erasures else None
        acked, behind = await _post_at_rate(
            ingest_url, intake_key, p["fresh_rate"], p["fresh_seconds"], run
        )
        sent_for = time.perf_counter() - started
        merge_delays = await merging if merging is not None else []
        erasure_delays = await erasing if erasing is not None else []
        # A worker behind its backlog reviews nothing (time never overtakes unapplied
        # events), so time-driven changes may come late: wait up to 90 s for them.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and (  # noqa: ASYNC110 (the listener fills these)
            any(e not in arrivals for e in acked) or len(time_changes) < len(due)
        ):
            await asyncio.sleep(0.2)
        cpu = meter.stop()
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await consumer.stop()
        await bench_worker.stop_worker(worker)
    delays = [(arrivals[e] - t) * 1000 for e, t in acked.items() if e in arrivals]
    lags = [(time_changes[c] - due[c]) * 1000 for c in due if c in time_changes]
    merged: dict[str, Any] = {}
    if large_ms is not None:
        merged["merge"] = bench_merges.figures(large_ms, merge_delays, bench_http.pct)
        merged["merge"]["under_rate_per_s"] = p["fresh_rate"]
    if erasures is not None:
        merged["erasure"] = bench_erasures.figures(
            erasure_delays, p["erasure_facts"], bench_http.pct
        )
        merged["erasure"]["under_rate_per_s"] = p["fresh_rate"]
    return merged | {
        "freshness": {
            "target_rate_per_s": p["fresh_rate"],
            "achieved_rate_per_s": round(len(acked) / sent_for),
            "accepted": len(acked),
            "late_starts": behind,
            "changes_seen": len(delays),
            "p50_ms": round(bench_http.pct(delays, 0.5), 1),
            "p95_ms": round(bench_http.pct(delays, 0.95), 1),
            "p99_ms": round(bench_http.pct(delays, 0.99), 1),
        }
        | bench_cpu.per_event(cpu, len(acked), p["fresh_rate"]),
        "time_driven": {
            "customers": len(due),
            "changes_seen": len(lags),
            "p50_ms": round(bench_http.pct(lags, 0.5), 1),
            "p99_ms": round(bench_http.pct(lags, 0.99), 1),
            "max_ms": round(max(lags), 1) if lags else None,
            "review_interval_s": settings.review_interval_seconds,
        },
    }


def engine(p: dict[str, Any]) -> dict[str, Any]:
    """bench/engine.py on one core, as its own process."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [sys.executable, "-m", "bench.engine", "--customers", str(p["engine_customers"])]
        cmd += ["--rounds", str(p["engine_rounds"]), "--json", out.name]
        if (os.cpu_count() or 1) > 1:
            cmd = ["taskset", "-c", "1", *cmd]
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        result: dict[str, Any] = orjson.loads(Path(out.name).read_bytes())
        return result


async def run(scale: str, overrides: dict[str, Any], seed: int, log_dir: Path) -> dict[str, Any]:
    p = SCALES[scale] | overrides
    base = ClassifierSettings()
    settings = await isolated_settings(base)
    url, tag = settings.database_url, settings.consumer_group
    log_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (once, before any work)
    results: dict[str, Any] = {
        "cores": os.cpu_count(),
        "scale": scale,
        "parameters": p | {"seed": seed, "lookup_concurrency": CONCURRENCY},
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    procs: list[asyncio.subprocess.Process] = []
    try:
        # First, while no service process of this run is up: the figure is the
        # batch path's alone (its own throw-away database).
        say(f"history growth: customers with {p['history_sizes']} orders")
        results["history_growth"] = await bench_history.run(
            base, p["history_sizes"], p["history_customers"], p["history_rounds"]
        )
        await ensure_topics(settings)
        say(f"worker: generating and preloading {p['worker_events']:,} events")
        written = await bench_worker.preload(settings, p["worker_events"], seed)
        # worker.* (1 process), worker.processes_2.* and idle.* (idle_seconds of CPU).
        results |= await bench_worker.worker_figures(
            settings, written, idle_seconds=p["idle_seconds"], say=say
        )
        engine_ = make_engine(settings)
        _, read_key = await create_key(make_sessionmaker(engine_), "bench", "read")
        _, admin_key = await create_key(make_sessionmaker(engine_), "bench-admin", "admin")
        # Intake is measured with a key (its lookup, quota and re-send check included);
        # no quota, so the figures are the service's, not the key's limit.
        _, intake_key = await create_key(
            make_sessionmaker(engine_), "bench-intake", INTAKE_SCOPES, rate_per_second=0
        )
        await engine_.dispose()
        env = service_env(settings, CLASSIFIER_CUTOFFS_INTERVAL_SECONDS="100000")
        api, api_url = await bench_http.start_api(
            "classifier.app:create_app", env, log_dir / "api.log"
        )
        procs.append(api)
        say("lookups")
        results["lookups"] = await lookups(api_url, read_key, url, p)
        say(f"activation: growing to {p['activation_customers']:,} customers")
        await grow_population(url, p["activation_customers"])
        say("activation: re-evaluating everyone under a changed scheme (a worker's job)")
        activation_log = log_dir / "worker-activation.log"
        activation_log.unlink(missing_ok=True)
        # The worker consumes the drained topic (nothing left) and runs the job.
        worker = await bench_worker.start_worker(
            settings, activation_log, CLASSIFIER_CUTOFFS_INTERVAL_SECONDS="100000"
        )
        try:
            await _worker_started(activation_log, worker)
            results["activation"] = await activation(api_url, admin_key)
        finally:
            await bench_worker.stop_worker(worker)
        ingest, ingest_url = await bench_http.start_api(
            "ingest.app:create_app", env, log_dir / "ingest.log"
        )
        procs.append(ingest)
        say("intake")
        ns = argparse.Namespace(
            rounds=1,
            single_requests=p["intake_single"],
            concurrency=CONCURRENCY,
            batches=p["intake_batches"],
            batch_size=500,
        )
        intake = await bench_http.bench_intake(ingest_url, ns, intake_key)
        results["intake"] = {
            "single_events_per_s": round(intake["single_events_per_s"]),
            "batch_events_per_s": round(intake["batch_events_per_s"]),
            "single_concurrency": CONCURRENCY,
            "batch_size": 500,
            "processes": bench_http.processes("ingest.app:create_app"),
        }
        say("HTTP floor: the same requests to trivial endpoints on the same server stack")
        floor_ns = argparse.Namespace(
            single_requests=p["intake_single"],
            concurrency=CONCURRENCY,
            batches=p["intake_batches"],
            batch_size=500,
            lookups=p["lookups"],
            bulk_requests=p["bulk_requests"],
            rounds=1,
        )
        results["intake"] |= bench_http.intake_vs_floor(
            results["intake"],
            await bench_http.measure_floor(
                env, log_dir, intake_key, floor_ns, "ingest.app:create_app"
            ),
        )
        lk = results["lookups"]
        lk["processes"] = bench_http.processes("classifier.app:create_app")
        lk |= bench_http.lookups_vs_floor(
            lk["single_rps"],
            lk["single_p99_ms"],
            lk["bulk_p50_ms"],
            await bench_http.measure_floor(
                env, log_dir, read_key, floor_ns, "classifier.app:create_app"
            ),
        )
        fresh = settings.model_copy(
            update={"activity_topic": f"{tag}-fresh", "consumer_group": f"{tag}-f"}
        )
        await ensure_topics(fresh)
        webhook_secret = secrets.token_hex(16)
        fresh_ingest, fresh_url = await bench_http.start_api(
            "ingest.app:create_app",
            service_env(fresh, INGEST_GENERIC_WEBHOOK_SECRET=webhook_secret),
            log_dir / "ingest-fresh.log",
        )
        procs.append(fresh_ingest)
        say(
            f"freshness at {p['fresh_rate']}/s for {p['fresh_seconds']} s, time-driven changes, "
            f"{p['merge_pairs']} merges under that load and one of two customers with "
            f"{p['merge_large_orders']:,} orders each"
        )
        # The fresh phase's API publishes erasure requests to the fresh topic.
        fresh_api, fresh_api_url = await bench_http.start_api(
            "classifier.app:create_app", service_env(fresh), log_dir / "api-fresh.log"
        )
        procs.append(fresh_api)
        erasures = bench_erasures.ErasureBench(
            fresh, fresh_api_url, admin_key, p["erasure_customers"], p["erasure_facts"]
        )
        merges = bench_merges.MergeBench(
            fresh,
            fresh_url,
            webhook_secret,
            api_url,
            read_key,
            p["merge_pairs"],
            p["merge_large_orders"],
        )
        results |= await freshness_and_time(
            fresh,
            fresh_url,
            intake_key,
            p,
            log_dir / "worker-fresh.log",
            merges,
            erasures,
            ingest=fresh_ingest,
        )
        say(f"webhooks: {p['webhook_changes']:,} changes at {p['webhook_rate']:,}/s")
        hooks = settings.model_copy(
            update={"class_changes_topic": f"{tag}-hooks", "consumer_group": f"{tag}-h"}
        )
        results["webhooks"] = await bench_webhooks.measure(
            hooks,
            p["webhook_changes"],
            p["webhook_rate"],
            log_dir / "dispatcher.log",
            bench_http.pct,
        )
        say("engine (one core)")
        results["engine"] = engine(p)
    finally:
        for proc in procs:
            proc.terminate()
            await proc.wait()
        await drop_database(base.database_url, url)
    return results


def say(message: str) -> None:
    sys.stderr.write(f"[bench] {message}\n")
    sys.stderr.flush()


def table(r: dict[str, Any]) -> str:
    w, lk, act, it = r["worker"], r["lookups"], r["activation"], r["intake"]
    fr, td, en, hg = r["freshness"], r["time_driven"], r["engine"], r["history_growth"]
    w2, idle = r["worker"]["processes_2"], r["idle"]
    rows = [
        ("worker drain", f"{w['events_per_s']:,} events/s", f"{w['events']:,} events, 1 process,"
         f" peak RSS {w['peak_rss_mb']} MB, worker = {w['vs_floor']:.3f} x floor"),
        ("worker drain x2", f"{w2['events_per_s']:,} events/s", "2 processes in one group, "
         f"worker = {w2['vs_floor']:.3f} x floor"),
        ("raw floor", f"{w['floor_events_per_s']:,} events/s", "aiokafka + asyncpg bulk upsert,"
         " same events"),
        ("idle worker", f"{idle['worker_cpu_percent']} % CPU", f"of one core, over "
         f"{idle['seconds']} s with nothing to consume"
         + ("" if idle.get("settled", True) else " (NOT settled: reviews or outbox pending)")),
        ("freshness", f"p50 {fr['p50_ms']} ms", f"p95 {fr['p95_ms']} ms, p99 {fr['p99_ms']} ms at"
         f" {fr['achieved_rate_per_s']:,}/s (target {fr['target_rate_per_s']:,}/s)"),
        ("freshness CPU", f"{fr['cpu_ms_per_event_total']} ms/event", ", ".join(
            f"{k} {v}" for k, v in fr["cpu_ms_per_event"].items()) + f": "
         f"{fr['cores_needed_at_target']} of {fr['cores']} cores at the target rate"),
        ("time-driven lag", f"p50 {td['p50_ms']} ms", f"p99 {td['p99_ms']} ms, "
         f"{td['changes_seen']}/{td['customers']} seen, under the freshness load"),
        ("intake single", f"{it['single_events_per_s']:,} events/s", "concurrency 32, "
         f"{it['processes']} processes, {it['vs_http_floor']} x HTTP floor "
         f"({it['http_floor_rps']:,} req/s)"),
        ("intake batch", f"{it['batch_events_per_s']:,} events/s", "500 per NDJSON request, "
         f"{it['batch_vs_http_floor']} x HTTP floor"),
        ("lookup single", f"{lk['single_rps']:,} req/s", f"p50 {lk['single_p50_ms']} ms, p99 "
         f"{lk['single_p99_ms']} ms, concurrency 32, {lk['customers_in_db']:,} customers, "
         f"{lk['processes']} processes, {lk['vs_http_floor']} x HTTP floor "
         f"({lk['http_floor_rps']:,} req/s)"),
        ("lookup bulk", f"p50 {lk['bulk_p50_ms']} ms", f"p99 {lk['bulk_p99_ms']} ms, "
         f"{lk['bulk_ids']} ids, {lk['bulk_vs_http_floor']} x HTTP floor"),
        ("history, as-of", f"p99 {lk['history_p99_ms']} / {lk['as_of_p99_ms']} ms",
         f"{lk['history_requests']:,} each, concurrency 32"),
        ("activation", f"{act['seconds']} s", f"{act['customers']:,} customers "
         f"({act['customers_per_s']:,}/s), {act['changes']:,} changes"),
        ("engine", f"{en['full_evals_per_s']:,} evals/s", f"one core, floor {en['floor_per_s']:,}"
         f"/s, {en['dimensions']} dimensions"),
        ("history growth", f"ratio {hg['cost_ratio']}", bench_history.describe(hg)),
    ]  # fmt: skip
    if "merge" in r:
        mg = r["merge"]
        rows.append(("merge", f"p99 {mg['p99_ms']} ms", f"p50 {mg['p50_ms']} ms, {mg['merges']} "
                     f"merges webhook 202 -> both lookups show the survivor, under the freshness "
                     f"load (its p99 {fr['p99_ms']} ms)"))  # fmt: skip
        big = r["parameters"]["merge_large_orders"]
        er = r["erasure"]
        rows.append(("erasure", f"p99 {er['p99_ms']} ms", f"p50 {er['p50_ms']} ms, "
                     f"{er['erasures']} customers with {er['facts_each']:,} facts each, request "
                     "-> completed receipt, under the freshness load"))  # fmt: skip
        rows.append(("merge large", f"{mg['large_ms']} ms",
                     f"two customers with {big:,} orders each, quiet worker"))  # fmt: skip
    if "webhooks" in r:
        wh = r["webhooks"]
        rows.append(("webhooks", f"{wh['deliveries_per_s']:,} deliveries/s",
                     f"p50 {wh['p50_ms']} ms, p99 {wh['p99_ms']} ms publish -> receiver's 200, "
                     f"{wh['delivered']}/{wh['changes']} at {wh['rate_per_s']:,}/s, "
                     f"{wh['vs_floor']} x floor ({wh['floor_posts_per_s']} POSTs/s)"))  # fmt: skip
    lines = [f"cores: {r['cores']}  scale: {r['scale']}  parameters: {r['parameters']}"]
    lines += [f"{a:<16} {b:>20}   {c}" for a, b, c in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="large")
    parser.add_argument("--events", type=int, help="worker: events to preload")
    parser.add_argument("--activation-customers", type=int, help="e.g. 1000000")
    parser.add_argument("--rate", type=int, help="freshness: events per second")
    parser.add_argument("--history-sizes", help="history growth: orders per customer, e.g. 10,100")
    parser.add_argument("--erasure-facts", type=int, help="erasure: facts per erased customer")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", default=str(ROOT / "bench-results" / "latest.json"))
    parser.add_argument("--log-dir", default=str(ROOT / ".stack" / "logs" / "bench"))
    args = parser.parse_args()
    overrides = {
        k: v
        for k, v in {
            "worker_events": args.events,
            "activation_customers": args.activation_customers,
            "fresh_rate": args.rate,
            "erasure_facts": args.erasure_facts,
            "history_sizes": bench_history.parse_sizes(args.history_sizes)
            if args.history_sizes
            else None,
        }.items()
        if v is not None
    }
    results = asyncio.run(run(args.scale, overrides, args.seed, Path(args.log_dir)))
    sys.stdout.write(table(results) + "\n")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    sys.stdout.write(f"results: {out}\n")
