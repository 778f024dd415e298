"""HTTP benchmarks: ingest intake (single and batch) and customer lookups (single, bulk).

    env $(scripts/stack.sh env) .venv/bin/python -m bench.http --customers 100000

Runs the real services as uvicorn processes on spare ports against the local
PostgreSQL (a throw-away database) and Kafka (a topic of its own). Lookups run
on a database of `--customers` customers: one customer is classified through
the real engine, then copied under new ids in SQL (lookup cost depends on row
shape and index size, not on how the rows got there). Figures are medians of
`--rounds` rounds; every figure is printed with the core count and parameters.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import uuid
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


async def start_api(app: str, env: dict[str, str], log: Path) -> tuple[Any, str]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "uvicorn"), app, "--factory", "--port", str(port),
        "--no-access-log", "--log-level", "warning",
        "--http", "eventschemas.serving:GuardedHttpToolsProtocol",
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

        def single_request(i: int, run: str = run) -> loadgen.Request:
            return loadgen.Request("POST", "/v1/orders", orjson.dumps(order(i, run)))

        wall, _ = await loadgen.run(
            url, single_request, args.single_requests, args.concurrency, headers
        )
        single.append(args.single_requests / wall)

        def batch_request(i: int, run: str = run, size: int = args.batch_size) -> loadgen.Request:
            body = b"\n".join(orjson.dumps(order(i * size + k, run)) for k in range(size))
            return loadgen.Request("POST", "/v1/orders:batch", body, "application/x-ndjson")

        wall, _ = await loadgen.run(url, batch_request, args.batches, 4, headers)
        batch.append(args.batches * args.batch_size / wall)
    return {
        "single_events_per_s": statistics.median(single),
        "batch_events_per_s": statistics.median(batch),
        "single_rounds": single,
        "batch_rounds": batch,
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

        def one(i: int, r: int = r) -> loadgen.Request:
            return loadgen.Request("GET", f"/v1/customers/cust-{(i * 7919 + r) % n + 1}")

        wall, lat = await loadgen.run(url, one, args.lookups, args.concurrency, headers)
        ids = [f"cust-{(k * 104729 + r) % n + 1}" for k in range(1000)]
        body = orjson.dumps({"ids": ids})

        def many(i: int, body: bytes = body) -> loadgen.Request:
            return loadgen.Request("POST", "/v1/customers:lookup", body)

        _, bulk = await loadgen.run(url, many, args.bulk_requests, 1, headers)
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
    finally:
        for proc in procs:
            proc.terminate()
            await proc.wait()
        await drop_database(base.database_url, url)
    return {"intake": intake, "lookups": lookups}


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
    lines = [
        f"cores: {os.cpu_count()}  parameters: {params}",
        f"intake single  {intake['single_events_per_s']:>9,.0f} events/s"
        f"  (concurrency {args.concurrency})",
        f"intake batch   {intake['batch_events_per_s']:>9,.0f} events/s"
        f"  ({args.batch_size}/request, NDJSON)",
        f"lookup single  {lk['rps']:>9,.0f} req/s"
        f"     p50 {lk['p50_ms']:.1f} ms  p99 {lk['p99_ms']:.1f} ms",
        f"lookup bulk    1,000 ids   p50 {lk['bulk_p50_ms']:.1f} ms"
        f"  p99 {lk['bulk_p99_ms']:.1f} ms",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    if args.json:
        document = {"cores": os.cpu_count(), "parameters": params, **results}
        Path(args.json).write_text(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
