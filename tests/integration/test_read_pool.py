"""The read pool opens ahead with its statements prepared, and starts without a database."""

from __future__ import annotations

import socket
import time

import pytest

from classifier.customers import reads
from classifier.db import dsn

pytestmark = pytest.mark.integration


async def test_every_connection_opens_at_startup_with_the_read_statements_prepared(
    database_url: str,
) -> None:
    pool = await reads.create_pool(dsn(database_url), 3, 5)
    try:
        assert pool.get_size() == 0  # lazily, until opened ahead
        assert await reads.open_connections(pool) == 3
        assert pool.get_size() == 3
        for _ in range(3):  # whichever connection a request gets
            async with pool.acquire() as conn:
                prepared = {
                    row["statement"]
                    for row in await conn.fetch("SELECT statement FROM pg_prepared_statements")
                }
                # A request's first history, as-of, current-classes or lookup read
                # plans nothing: its statement was prepared when the connection opened.
                assert {reads.HISTORY, reads.AS_OF, reads.CURRENT, reads.MANY} <= prepared
                assert await conn.fetch(reads.HISTORY, "nobody", 10, None) == [
                    (False, None, None, None, None, None, None, None)
                ]
    finally:
        await pool.close()


async def test_a_database_that_is_away_leaves_the_pool_lazy_and_does_not_stop_the_start() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pool = await reads.create_pool(f"postgresql://u:p@127.0.0.1:{port}/none", 3, 2)
    try:
        started = time.monotonic()
        assert await reads.open_connections(pool) == 0
        assert time.monotonic() - started < 5  # refused at once; bounded by the connect timeout
        assert pool.get_size() == 0
    finally:
        await pool.close()
