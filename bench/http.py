"""HTTP benchmarks: ingest intake (single and batch) and customer lookups (single, bulk).

    env $(scripts/stack.sh env) .venv/bin/python -m bench.http --customers 100000

Runs the real services as uvicorn processes on spare ports against the local
PostgreSQL (a throw-away database) and Kafka (a topic of its own). Lookups run
on a database of `--customers` customers: one customer is classified through
the real engine, then copied under new ids in SQL (lookup cost depends on row
shape and index size, not on how the rows got there). Figures are medians of
`--rounds` rounds; every figure is printed with the core count and parameters.

The APIs run as `make up` runs them: INGEST_WORKERS and CLASSIFIER_API_WORKERS
processes (default: one per core). In the same run, the HTTP floor
(bench.floor: trivial endpoints on the same framework, process count, auth and
JSON library) is measured with the same requests, and every HTTP figure is
also given as a fraction of it (`vs_http_floor`: 1.0 = as fast as a request
that does nothing; for latencies, floor latency / measured latency).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from bench import loadgen
from bench.infra import ROOT, create_database, customer_columns, drop_database, dsn
from classifier.auth import INTAKE_SCOPES, create_key
from classifier.config import ClassifierSettings
from classifier.db import make_engine, make_sessionmaker
from classifier.processing.batch import BatchProcessor, Delivery
from classifier.schemes.service import SchemeCache, ensure_active_scheme
from classifier.topics import ensure_topics
from eventschemas.events import OrderPlaced


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The setting naming each API's process count (scripts/stack.sh, compose, chart).
WORKERS_SETTING = {
    "ingest.app:create_app": "INGEST_WORKERS",
    "classifier.app:create_app": "CLASSIFIER_API_WORKERS",
}


def processes(app: str) -> int:
    """How many processes `make up` runs `app` with: its setting, else one per core."""
    return int(os.environ.get(WORKERS_SETTING.get(app, ""), "") or os.cpu_count() or 1)


async def start_api(
    app: str, env: dict[str, str], log: Path, *, workers: int | None = None
) -> tuple[Any, str]:
    """`app` under uvicorn as `make up` runs it (`workers` processes, default as there)."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "uvicorn"), app, "--factory", "--port", str(port),
        "--no-access-log", "--log-level", "warning",
        "--timeout-keep-alive", "5", "--limit-concurrency", "2000",
        "--http", "eventschemas.serving:GuardedHttpToolsProtocol",
        "--workers", str(workers or processes(app)),
        cwd=ROOT, env=env, stdout=log.open("ab"), stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            try:
                if (await client.get(url + "/readyz")).status_code == 200:
                    return proc, url
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{app} did not become ready; see {log}")


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of `values`; NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def order(i: int, run: str) -> dict[str, Any]:
    return {
        "order_id": f"{run}-{i}",
        "customer_id": f"bench-{i % 5000}",
        "amount": "120.50",
        "currency": "EUR",
        "placed_at": "2026-11-01T10:00:00+00:00",
    }


async def bench_intake(url: str, args: argparse.Namespace, key: str) -> dict[str, Any]:
    """Intake throughput with an intake key (`key`: its lookup and checks are counted)."""
    headers = {"Authorization": f"Bearer {key}"}
    single, batch = [], []
    for _ in range(args.rounds):
        run = uuid.uuid4().hex[:8]

        wall, _ = await loadgen.run(
            url, single_order(run), args.single_requests, args.concurrency, headers
        )
        single.append(args.single_requests / wall)
        wall, _ = await loadgen.run(
            url, order_batch(run, args.batch_size), args.batches, 4, headers
        )
        batch.append(args.batches * args.batch_size / wall)
    return {
        "single_events_per_s": statistics.median(single),
        "batch_events_per_s": statistics.median(batch),
        "single_rounds": single,
        "batch_rounds": batch,
    }


def single_order(run: str) -> Callable[[int], loadgen.Request]:
    return lambda i: loadgen.Request("POST", "/v1/orders", orjson.dumps(order(i, run)))


def order_batch(run: str, size: int) -> Callable[[int], loadgen.Request]:
    def make(i: int) -> loadgen.Request:
        body = b"\n".join(orjson.dumps(order(i * size + k, run)) for k in range(size))
        return loadgen.Request("POST", "/v1/orders:batch", body, "application/x-ndjson")

    return make


def one_lookup(customers: int, salt: int = 0) -> Callable[[int], loadgen.Request]:
    return lambda i: loadgen.Request(
        "GET", f"/v1/customers/cust-{(i * 7919 + salt) % customers + 1}"
    )


def bulk_lookup(ids: list[str]) -> Callable[[int], loadgen.Request]:
    body = orjson.dumps({"ids": ids})
    return lambda i: loadgen.Request("POST", "/v1/customers:lookup", body)


async def bench_floor(
    url: str,
    key: str,
    *,
    single_requests: int,
    concurrency: int,
    batches: int,
    batch_size: int,
    lookups: int,
    bulk_requests: int,
    rounds: int = 1,
) -> dict[str, float]:
    """The floor server's figures for the requests the benchmarks send (medians of rounds)."""
    headers = {"Authorization": f"Bearer {key}"}
    measured: list[dict[str, float]] = []
    for _ in range(rounds):
        run = uuid.uuid4().hex[:8]
        single_wall, _ = await loadgen.run(
            url, single_order(run), single_requests, concurrency, headers
        )
        batch_wall, _ = await loadgen.run(url, order_batch(run, batch_size), batches, 4, headers)
        get_wall, get_lat = await loadgen.run(url, one_lookup(1000), lookups, concurrency, headers)
        ids = [f"cust-{k}" for k in range(1000)]
        _, bulk = await loadgen.run(url, bulk_lookup(ids), bulk_requests, 1, headers)
        measured.append(
            {
                "post_rps": single_requests / single_wall,
                "batch_events_per_s": batches * batch_size / batch_wall,
                "get_rps": lookups / get_wall,
                "get_p99_ms": pct(get_lat, 0.99) * 1000,
                "bulk_p50_ms": pct(bulk, 0.5) * 1000,
            }
        )
    return {k: statistics.median(m[k] for m in measured) for k in measured[0]}


def intake_vs_floor(intake: dict[str, Any], floor: dict[str, float]) -> dict[str, float]:
    """Intake figures as fractions of the floor (1.0: as fast as doing nothing)."""
    return {
        "vs_http_floor": round(intake["single_events_per_s"] / floor["post_rps"], 3),
        "batch_vs_http_floor": round(intake["batch_events_per_s"] / floor["batch_events_per_s"], 3),
        "http_floor_rps": round(floor["post_rps"]),
        "http_floor_batch_events_per_s": round(floor["batch_events_per_s"]),
    }


def lookups_vs_floor(
    rps: float, p99_ms: float, bulk_p50_ms: float, floor: dict[str, float]
) -> dict[str, float]:
    """Lookup figures as fractions of the floor (latencies: floor latency / measured)."""
    return {
        "vs_http_floor": round(rps / floor["get_rps"], 3),
        "p99_vs_http_floor": round(floor["get_p99_ms"] / p99_ms, 3),
        "bulk_vs_http_floor": round(floor["bulk_p50_ms"] / bulk_p50_ms, 3),
        "http_floor_rps": round(floor["get_rps"]),
        "http_floor_p99_ms": round(floor["get_p99_ms"], 1),
    }


async def seed_customers(settings: ClassifierSettings, count: int) -> None:
    """Classify one customer with the real engine, then copy it under `count` ids."""
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    await ensure_active_scheme(sessions)
    now = datetime.now(UTC)
    events = [
        OrderPlaced(
            customer_id="template",
            order_id=f"t-{k}",
            amount=Decimal("250"),
            currency="USD",
            amount_base=Decimal("250"),
            base_currency="USD",
            placed_at=now - timedelta(days=20 * k + 1),
        )
        for k in range(6)
    ]
    await BatchProcessor(sessions, SchemeCache()).process(
        [Delivery(e.to_envelope("bench"), e, partition=0) for e in events]
    )
    await engine.dispose()
    conn = await asyncpg.connect(dsn(settings.database_url))
    try:
        columns = await customer_columns(conn)
        cols = ", ".join(columns)
        await conn.execute(
            f"INSERT INTO customers (id, {cols}) SELECT 'cust-' || g, {cols} "
            "FROM customers, generate_series(1, $1) g WHERE id = 'template'",
            count,
        )
        await conn.execute(
            "INSERT INTO customer_classes (customer_id, dimension, class, since, scheme_version) "
            "SELECT 'cust-' || g, dimension, class, since, scheme_version "
            "FROM customer_classes, generate_series(1, $1) g WHERE customer_id = 'template'",
            count,
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def bench_lookups(url: str, key: str, args: argparse.Namespace) -> dict[str, Any]:
    rounds: list[dict[str, float]] = []
    headers = {"Authorization": f"Bearer {key}"}
    n = args.customers
    for r in range(args.rounds):
        wall, lat = await loadgen.run(
            url, one_lookup(n, r), args.lookups, args.concurrency, headers
        )
        ids = [f"cust-{(k * 104729 + r) % n + 1}" for k in range(1000)]
        _, bulk = await loadgen.run(url, bulk_lookup(ids), args.bulk_requests, 1, headers)
        rounds.append(
            {
                "rps": args.lookups / wall,
                "p50_ms": pct(lat, 0.5) * 1000,
                "p99_ms": pct(lat, 0.99) * 1000,
                "bulk_p50_ms": pct(bulk, 0.5) * 1000,
                "bulk_p99_ms": pct(bulk, 0.99) * 1000,
            }
        )
    return {k: statistics.median(r[k] for r in rounds) for k in rounds[0]} | {"rounds": rounds}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    base = ClassifierSettings()
    url = await create_database(base.database_url, prefix="classifier_bench")
    run_id = uuid.uuid4().hex[:8]
    settings = base.model_copy(
        update={"database_url": url, "activity_topic": f"bench-{run_id}-activity"}
    )
    await ensure_topics(settings)
    logs = Path(args.log_dir)
    logs.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (once, before any work)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "KAFKA_ACTIVITY_TOPIC": settings.activity_topic,
        "CLASSIFIER_CUTOFFS_INTERVAL_SECONDS": "100000",
    }
    procs = []
    try:
        engine = make_engine(settings)
        _, intake_key = await create_key(
            make_sessionmaker(engine), "bench-intake", INTAKE_SCOPES, rate_per_second=0
        )
        await engine.dispose()
        ingest, ingest_url = await start_api("ingest.app:create_app", env, logs / "ingest.log")
        procs.append(ingest)
        intake = await bench_intake(ingest_url, args, intake_key)
        await seed_customers(settings, args.customers)
        engine = make_engine(settings)
        _, key = await create_key(make_sessionmaker(engine), "bench", "read")
        await engine.dispose()
        api, api_url = await start_api("classifier.app:create_app", env, logs / "api.log")
        procs.append(api)
        lookups = await bench_lookups(api_url, key, args)
        for proc in procs:  # the floor gets the machine the APIs had
            proc.terminate()
            await proc.wait()
        procs.clear()
        intake |= intake_vs_floor(
            intake, await measure_floor(env, logs, intake_key, args, "ingest.app:create_app")
        )
        lookups |= lookups_vs_floor(
            lookups["rps"],
            lookups["p99_ms"],
            lookups["bulk_p50_ms"],
            await measure_floor(env, logs, key, args, "classifier.app:create_app"),
        )
    finally:
        for proc in procs:
            proc.terminate()
            await proc.wait()
        await drop_database(base.database_url, url)
    return {"intake": intake, "lookups": lookups}


async def measure_floor(
    env: dict[str, str], logs: Path, key: str, args: argparse.Namespace, like: str
) -> dict[str, float]:
    """The floor with as many processes as `like` ran with, and the same requests."""
    floor, floor_url = await start_api(
        "bench.floor:create_app", env, logs / "floor.log", workers=processes(like)
    )
    try:
        return await bench_floor(
            floor_url,
            key,
            single_requests=args.single_requests,
            concurrency=args.concurrency,
            batches=args.batches,
            batch_size=args.batch_size,
            lookups=args.lookups,
            bulk_requests=args.bulk_requests,
            rounds=args.rounds,
        )
    finally:
        floor.terminate()
        await floor.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--single-requests", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--lookups", type=int, default=4000)
    parser.add_argument("--bulk-requests", type=int, default=20)
    parser.add_argument("--log-dir", default=str(ROOT / ".stack" / "logs" / "bench"))
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    params = {k: v for k, v in vars(args).items() if k not in ("json", "log_dir")}
    intake, lk = results["intake"], results["lookups"]
    workers = {a: processes(a) for a in WORKERS_SETTING}
    lines = [
        f"cores: {os.cpu_count()}  processes: {workers}  parameters: {params}",
        f"intake single  {intake['single_events_per_s']:>9,.0f} events/s"
        f"  (concurrency {args.concurrency})"
        f"  = {intake['vs_http_floor']:.3f} x floor ({intake['http_floor_rps']:,} req/s)",
        f"intake batch   {intake['batch_events_per_s']:>9,.0f} events/s"
        f"  ({args.batch_size}/request, NDJSON)  = {intake['batch_vs_http_floor']:.3f} x floor"
        f" ({intake['http_floor_batch_events_per_s']:,} events/s)",
        f"lookup single  {lk['rps']:>9,.0f} req/s"
        f"     p50 {lk['p50_ms']:.1f} ms  p99 {lk['p99_ms']:.1f} ms"
        f"  = {lk['vs_http_floor']:.3f} x floor ({lk['http_floor_rps']:,} req/s,"
        f" p99 {lk['http_floor_p99_ms']} ms)",
        f"lookup bulk    1,000 ids   p50 {lk['bulk_p50_ms']:.1f} ms"
        f"  p99 {lk['bulk_p99_ms']:.1f} ms  = {lk['bulk_vs_http_floor']:.3f} x floor",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    if args.json:
        document = {"cores": os.cpu_count(), "parameters": params, **results}
        Path(args.json).write_text(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
