"""History growth: the cost of one new order against how many orders a customer already has.

    env $(scripts/stack.sh env) .venv/bin/python -m bench.history --sizes 10,1000,10000

Whole path, database included, on a throw-away database: the real
`BatchProcessor` (the worker's per-batch transaction, without Kafka), with the
worker's in-memory states (`cold_*`: without them, every state decoded from its
row, as after a restart). For each
size n, K customers are seeded with n orders, one per day ending an hour ago,
processed in big batches (one customer's events together). Then R rounds: each
round processes, per size class, ONE batch holding one new order (placed now)
for each of its K customers; ms per event = batch wall time / K, and the figure
is the median over rounds. Size classes take turns first across rounds, so
machine noise hits all alike. `state_bytes` is the median stored size of one
such customer's state (see `state_bytes`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from bench.infra import drop_database, dsn, isolated_settings
from classifier.config import ClassifierSettings
from classifier.db import make_engine, make_sessionmaker
from classifier.processing.batch import BatchProcessor, Delivery
from classifier.processing.cache import StateCache
from classifier.schemes.service import SchemeCache, ensure_active_scheme
from eventschemas.events import OrderPlaced

SIZES = (10, 1_000, 10_000)
CUSTOMERS = 20
ROUNDS = 5
SEED_BATCH = 1_000
SOURCE = "bench-history"

# Tables with a `customer_id` column that are not a customer's state: append-only
# logs (facts, class history) and delivery bookkeeping (outbox, inbox, id mapping).
# Every other such table counts towards `state_bytes`, so a new state table is
# counted without touching this benchmark.
NOT_STATE_TABLES = frozenset(
    {"customer_facts", "facts", "class_history", "class_changes", "inbox", "fxiaoke_accounts"}
)


def parse_sizes(text: str) -> tuple[int, ...]:
    """`10,1000,10000` -> (10, 1000, 10000)."""
    return tuple(int(s) for s in text.split(",") if s.strip())


def customer_id(size: int, k: int) -> str:
    return f"hist{size}-{k}"


def order(customer: str, order_id: str, placed_at: datetime) -> Delivery:
    event = OrderPlaced(
        customer_id=customer,
        order_id=order_id,
        amount=Decimal("80"),
        currency="USD",
        amount_base=Decimal("80"),
        base_currency="USD",
        placed_at=placed_at,
    )
    return Delivery(event.to_envelope(SOURCE), event, partition=0)


def history(customer: str, size: int, last: datetime) -> list[Delivery]:
    """`size` orders of one customer, one per day, the newest at `last`, oldest first."""
    return [
        order(customer, f"{customer}-o{j}", last - timedelta(days=size - 1 - j))
        for j in range(size)
    ]


async def seed(
    processor: BatchProcessor, sizes: Sequence[int], customers: int, batch: int
) -> dict[int, float]:
    """Give every customer its history; returns seconds spent per size."""
    last = datetime.now(UTC) - timedelta(hours=1)
    spent: dict[int, float] = {}
    for size in sizes:
        total, done, pending = size * customers, 0, list[Delivery]()
        started = time.perf_counter()
        for k in range(customers):
            pending += history(customer_id(size, k), size, last)
            while len(pending) >= batch or (k == customers - 1 and pending):
                await processor.process(pending[:batch])
                done += len(pending[:batch])
                del pending[:batch]
                elapsed = time.perf_counter() - started
                say(f"seed {size:,} orders/customer: {done:,}/{total:,} events, {elapsed:.0f} s")
        spent[size] = time.perf_counter() - started
    return spent


async def state_bytes(conn: asyncpg.Connection, customer: str) -> int:
    """Stored bytes of one customer's state: its `customers` row plus its rows in every
    other table with a `customer_id` column but those in NOT_STATE_TABLES."""
    total = int(
        await conn.fetchval(
            "SELECT coalesce(sum(pg_column_size(c.*)), 0) FROM customers c WHERE id = $1",
            customer,
        )
    )
    tables = await conn.fetch(
        "SELECT c.table_name FROM information_schema.columns c "
        "JOIN information_schema.tables t USING (table_schema, table_name) "
        "WHERE c.table_schema = current_schema() AND c.column_name = 'customer_id' "
        "AND t.table_type = 'BASE TABLE' AND c.table_name <> ALL($1::text[]) "
        "ORDER BY c.table_name",
        sorted(NOT_STATE_TABLES),
    )
    for row in tables:
        total += int(
            await conn.fetchval(
                f'SELECT coalesce(sum(pg_column_size(t.*)), 0) FROM "{row["table_name"]}" t '
                "WHERE customer_id = $1",
                customer,
            )
        )
    return total


async def measure(
    processor: BatchProcessor, sizes: Sequence[int], customers: int, rounds: int, tag: str = "new"
) -> dict[int, list[float]]:
    """ms per event of each round, per size; the size classes rotate which goes first."""
    per_round: dict[int, list[float]] = {size: [] for size in sizes}
    for r in range(rounds):
        for size in [*sizes[r % len(sizes) :], *sizes[: r % len(sizes)]]:
            now = datetime.now(UTC)
            batch = [
                order(customer_id(size, k), f"{customer_id(size, k)}-{tag}{r}", now)
                for k in range(customers)
            ]
            started = time.perf_counter()
            result = await processor.process(batch)
            wall = time.perf_counter() - started
            if result.applied != customers:
                raise RuntimeError(f"round {r}, size {size}: applied {result.applied} events")
            per_round[size].append(wall * 1000 / customers)
        say(
            f"round {r + 1}/{rounds}: "
            + ", ".join(f"{s}: {v[-1]:.2f} ms" for s, v in per_round.items())
        )
    return per_round


async def run(
    base: ClassifierSettings,
    sizes: Sequence[int] = SIZES,
    customers: int = CUSTOMERS,
    rounds: int = ROUNDS,
    seed_batch: int = SEED_BATCH,
) -> dict[str, Any]:
    """The `history_growth` figures, on a database of its own that is dropped afterwards."""
    sizes = sorted(sizes)
    settings = await isolated_settings(base)
    engine = make_engine(settings)
    try:
        sessions = make_sessionmaker(engine)
        await ensure_active_scheme(sessions)
        # The worker's processor: states stay in memory between batches while their
        # rows are unchanged (processing/cache.py).
        processor = BatchProcessor(sessions, SchemeCache(), StateCache(settings.state_cache_size))
        seeded = await seed(processor, sizes, customers, seed_batch)
        conn = await asyncpg.connect(dsn(settings.database_url))
        try:
            await conn.execute("ANALYZE")
            stored = {
                size: [await state_bytes(conn, customer_id(size, k)) for k in range(customers)]
                for size in sizes
            }
        finally:
            await conn.close()
        per_round = await measure(processor, sizes, customers, rounds)
        # Cold: every state decoded from its row, as after a restart or a rebalance.
        cold_rounds = await measure(
            BatchProcessor(sessions, SchemeCache()), sizes, customers, rounds, "cold"
        )
    finally:
        await engine.dispose()
        await drop_database(base.database_url, settings.database_url)
    ms = {size: statistics.median(v) for size, v in per_round.items()}
    cold = {size: statistics.median(v) for size, v in cold_rounds.items()}
    return {
        "customers_per_size": customers,
        "rounds": rounds,
        "ms_per_event": {str(s): round(ms[s], 3) for s in sizes},
        "cost_ratio": round(ms[sizes[-1]] / ms[sizes[0]], 2),
        "state_bytes": {str(s): round(statistics.median(stored[s])) for s in sizes},
        "ms_per_event_rounds": {str(s): [round(v, 3) for v in per_round[s]] for s in sizes},
        "cold_ms_per_event": {str(s): round(cold[s], 3) for s in sizes},
        "cold_cost_ratio": round(cold[sizes[-1]] / cold[sizes[0]], 2),
        "seed_seconds": {str(s): round(seeded[s], 1) for s in sizes},
    }


def say(message: str) -> None:
    sys.stderr.write(f"[history] {message}\n")
    sys.stderr.flush()


def describe(h: dict[str, Any]) -> str:
    """One line: ms per event and stored bytes per size, and the ratio largest/smallest."""
    sizes = list(h["ms_per_event"])
    per_size = ", ".join(
        f"{int(s):,}: {h['ms_per_event'][s]} ms/{h['state_bytes'][s]:,} B" for s in sizes
    )
    return (
        f"{per_size}; {sizes[-1]} vs {sizes[0]} orders = {h['cost_ratio']}x "
        f"(states decoded from their rows: {h['cold_cost_ratio']}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--sizes",
        default=",".join(map(str, SIZES)),
        help="orders a customer already has, comma-separated (default %(default)s)",
    )
    parser.add_argument("--customers", type=int, default=CUSTOMERS, help="K per size class")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--seed-batch", type=int, default=SEED_BATCH, help="events per batch")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    sizes = parse_sizes(args.sizes)
    result = asyncio.run(
        run(ClassifierSettings(), sizes, args.customers, args.rounds, args.seed_batch)
    )
    params = {k: v for k, v in vars(args).items() if k != "json"}
    sys.stdout.write(f"cores: {os.cpu_count()}  parameters: {params}\n")
    sys.stdout.write(f"history growth  {describe(result)}\n")
    if args.json:
        document = {"cores": os.cpu_count(), "parameters": params, "history_growth": result}
        Path(args.json).write_text(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
