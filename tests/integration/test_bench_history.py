"""`state_bytes` of the history benchmark counts every per-customer state table,
found by its `customer_id` column, and never an append-only facts log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from bench.history import customer_id, history, state_bytes
from bench.infra import create_database, drop_database, dsn
from classifier.config import ClassifierSettings
from classifier.db import make_engine, make_sessionmaker
from classifier.processing.batch import BatchProcessor
from classifier.schemes.service import SchemeCache, ensure_active_scheme

pytestmark = pytest.mark.integration


@pytest.fixture
async def scratch(classifier_settings: ClassifierSettings) -> AsyncIterator[str]:
    """A migrated database of this test's own: it adds tables."""
    url = await create_database(classifier_settings.database_url, prefix="classifier_test")
    yield url
    await drop_database(classifier_settings.database_url, url)


async def test_state_bytes_counts_new_state_tables_but_not_the_facts_log(scratch: str) -> None:
    engine = make_engine(ClassifierSettings(database_url=scratch))
    try:
        sessions = make_sessionmaker(engine)
        await ensure_active_scheme(sessions)
        customer = customer_id(3, 0)
        orders = history(customer, 3, datetime.now(UTC) - timedelta(hours=1))
        assert (await BatchProcessor(sessions, SchemeCache()).process(orders)).applied == 3
    finally:
        await engine.dispose()
    conn = await asyncpg.connect(dsn(scratch))
    try:
        row = await conn.fetchval(
            "SELECT pg_column_size(c.*) FROM customers c WHERE id = $1", customer
        )
        classes = await conn.fetchval(
            "SELECT sum(pg_column_size(t.*)) FROM customer_classes t WHERE customer_id = $1",
            customer,
        )
        before = await state_bytes(conn, customer)
        assert before == row + classes  # the row plus its current classes; history is a log

        # The facts log (it holds the three orders already) may grow: the state does not.
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM customer_facts WHERE customer_id = $1", customer
            )
            == 3
        )
        await conn.execute(
            "INSERT INTO customer_facts (customer_id, kind, fact_key, at, seen, body) "
            "SELECT $1, 'touch', 't' || i, now(), now(), jsonb_build_object('kind', "
            "repeat('x', 500)) FROM generate_series(1, 50) i",
            customer,
        )
        assert await state_bytes(conn, customer) == before

        await conn.execute("CREATE TABLE customer_aggregates (customer_id text, payload text)")
        await conn.execute(
            "INSERT INTO customer_aggregates VALUES ($1, repeat('y', 300)), ('other', 'z')",
            customer,
        )
        added = await conn.fetchval(
            "SELECT pg_column_size(t.*) FROM customer_aggregates t WHERE customer_id = $1",
            customer,
        )
        assert added > 300
        assert await state_bytes(conn, customer) == before + added
    finally:
        await conn.close()
