"""Throw-away databases and service environments, shared by benchmarks and tests."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

import asyncpg

from classifier.config import ClassifierSettings
from classifier.db import dsn

__all__ = [
    "ROOT",
    "create_database",
    "customer_columns",
    "drop_database",
    "dsn",
    "isolated_settings",
    "service_env",
]

ROOT = Path(__file__).resolve().parents[1]


async def create_database(base_url: str, prefix: str = "classifier_extra") -> str:
    """Create and migrate a fresh database next to `base_url`; returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(dsn(base_url))
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
    if migrate.returncode != 0:
        raise RuntimeError(f"migrations failed: {err.decode()}")
    return url


async def drop_database(base_url: str, url: str) -> None:
    """Drop an extra database; an autovacuum worker may hold it for a moment."""
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(dsn(base_url))
    try:
        for _ in range(10):
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                return
            except asyncpg.exceptions.InsufficientPrivilegeError:
                await asyncio.sleep(0.5)  # scripts/test.sh sweeps what is left
    finally:
        await conn.close()


async def isolated_settings(base: ClassifierSettings) -> ClassifierSettings:
    """`base` with a fresh migrated database and topics/consumer group of its own."""
    url = await create_database(base.database_url, prefix="classifier_bench")
    tag = uuid.uuid4().hex[:8]
    return base.model_copy(
        update={
            "database_url": url,
            "activity_topic": f"bench-{tag}-activity",
            "class_changes_topic": f"bench-{tag}-changes",
            "dlq_topic": f"bench-{tag}-dlq",
            "consumer_group": f"bench-{tag}",
        }
    )


async def customer_columns(conn: asyncpg.Connection) -> list[str]:
    """The columns of `customers` but `id`: for copying customers in SQL."""
    rows = await conn.fetch(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_name = 'customers' AND column_name <> 'id'"
    )
    return [r["column_name"] for r in rows]


def service_env(settings: ClassifierSettings, **extra: str) -> dict[str, str]:
    """The environment a service process needs to run with these settings."""
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "KAFKA_ACTIVITY_TOPIC": settings.activity_topic,
        "KAFKA_CLASS_CHANGES_TOPIC": settings.class_changes_topic,
        "KAFKA_DLQ_TOPIC": settings.dlq_topic,
        "CLASSIFIER_CONSUMER_GROUP": settings.consumer_group,
        "CLASSIFIER_WORKER_METRICS_PORT": "0",
        **extra,
    }
