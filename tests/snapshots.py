"""Extra throw-away databases and comparable snapshots of classifier state."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from typing import Any

import asyncpg
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from classifier.models import ClassChange, ClassHistory, Customer
from tests.processes import ROOT


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def create_database(base_url: str) -> str:
    """Create and migrate a fresh database next to `base_url`; returns its URL."""
    name = f"classifier_extra_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(_dsn(base_url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = base_url.rsplit("/", 1)[0] + "/" + name
    migrate = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "alembic",
        "upgrade",
        "head",
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await migrate.communicate()
    assert migrate.returncode == 0, err.decode()
    return url


async def drop_database(base_url: str, url: str) -> None:
    """Drop an extra database; an autovacuum worker may hold it for a moment."""
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(_dsn(base_url))
    try:
        for _ in range(10):
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                return
            except asyncpg.exceptions.InsufficientPrivilegeError:
                await asyncio.sleep(0.5)  # scripts/test.sh sweeps what is left
    finally:
        await conn.close()


async def snapshot(url: str) -> dict[str, Any]:
    """Everything a replay must reproduce: facts, classes, explanations, history, changes."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            customers = {
                row.id: (
                    row.facts,
                    row.classes,
                    row.features,
                    row.evaluated_at,
                    row.next_review_at,
                    row.order_count,
                    row.net_revenue,
                )
                for row in await conn.execute(select(Customer))
            }
            history = [
                tuple(row)
                for row in await conn.execute(
                    select(
                        ClassHistory.customer_id,
                        ClassHistory.dimension,
                        ClassHistory.cls,
                        ClassHistory.valid_from,
                        ClassHistory.valid_to,
                        ClassHistory.change_id,
                        ClassHistory.reason,
                    ).order_by(
                        ClassHistory.customer_id, ClassHistory.dimension, ClassHistory.valid_from
                    )
                )
            ]
            changes = {
                row.change_id: tuple(row)
                for row in await conn.execute(
                    select(
                        ClassChange.change_id,
                        ClassChange.customer_id,
                        ClassChange.dimension,
                        ClassChange.old_class,
                        ClassChange.new_class,
                        ClassChange.reason,
                        ClassChange.event_id,
                        ClassChange.occurred_at,
                    )
                )
            }
    finally:
        await engine.dispose()
    return {"customers": customers, "history": history, "changes": changes}
