"""The `classifier` command line, run as a real process against the real stack."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.config import ClassifierSettings
from classifier.models import Job
from classifier.processing.batch import BatchProcessor, Delivery
from classifier.schemes.service import SchemeCache, ensure_active_scheme
from eventschemas.changes import ClassChanged
from eventschemas.events import OrderPlaced
from tests.kafka_helpers import publish_raw
from tests.processes import ROOT, service_env

pytestmark = pytest.mark.integration
CLI = str(Path(sys.executable).parent / "classifier")


async def cli(settings: ClassifierSettings, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        CLI,
        *args,
        cwd=ROOT,
        env=service_env(settings, COLUMNS="200"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode()


async def one_customer(sessions: async_sessionmaker[AsyncSession]) -> None:
    await ensure_active_scheme(sessions)
    event = OrderPlaced(
        customer_id="cli-1",
        order_id="o1",
        amount=Decimal("10"),
        currency="USD",
        amount_base=Decimal("10"),
        base_currency="USD",
        placed_at=datetime.now(UTC) - timedelta(days=400),
    )
    await BatchProcessor(sessions, SchemeCache()).process([Delivery(event.to_envelope("t"), event)])


async def test_recompute_brings_everyone_up_to_now(
    classifier_settings: ClassifierSettings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await one_customer(sessions)  # its order is 400 days old: churned by now

    code, out = await cli(classifier_settings, "recompute")

    assert code == 0, out
    assert "class changes" in out
    assert int(out.strip().splitlines()[-1].split()[0]) >= 1


async def test_recompute_can_be_queued_as_a_job_for_the_workers(
    classifier_settings: ClassifierSettings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await one_customer(sessions)

    code, out = await cli(classifier_settings, "recompute", "--queue")

    assert code == 0, out
    async with sessions() as session:
        job = await session.scalar(select(Job))
    assert job is not None
    assert (job.kind, job.status, job.total, job.created_by) == ("recompute", "queued", 1, "cli")
    assert f"job {job.id} queued" in out


async def test_replay_refuses_a_database_with_state(
    classifier_settings: ClassifierSettings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await one_customer(sessions)

    code, out = await cli(classifier_settings, "replay")

    assert code == 2
    assert "refused" in out


async def test_tail_prints_class_changes(classifier_settings: ClassifierSettings) -> None:
    change = {
        "change_id": "x-1",
        "customer_id": "cust-9",
        "dimension": "value",
        "old_class": "low",
        "new_class": "high",
        "scheme_version": 1,
        "reason": "event",
        "event_id": "e-1",
        "rule": "high_revenue",
        "occurred_at": "2026-11-01T00:00:00Z",
    }
    await publish_raw(
        classifier_settings.kafka_bootstrap_servers,
        classifier_settings.class_changes_topic,
        [(b"cust-9", ClassChanged.model_validate(change).to_envelope().to_bytes())],
    )

    code, out = await cli(classifier_settings, "tail", "--from-beginning", "--limit", "1")

    assert code == 0, out
    assert "cust-9  value: low -> high  (event, rule high_revenue)" in out


async def test_api_keys_with_intake_scopes_and_a_quota(
    classifier_settings: ClassifierSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    code, out = await cli(
        classifier_settings,
        "api-keys", "create", "--name", "shop",
        "--scope", "orders:write,calls:write", "--scope", "imports:write",
        "--rate", "5", "--burst", "10",
    )  # fmt: skip
    assert code == 0, out
    assert "scope: orders:write calls:write imports:write" in out
    key = out.strip().splitlines()[-1]
    assert key.startswith("ck_")
    key_id = key.split("_")[1]

    code, listed = await cli(classifier_settings, "api-keys", "list")
    assert code == 0
    assert f"{key_id}\torders:write calls:write imports:write\t5/s burst 10\tactive\tshop" in listed

    code, _ = await cli(classifier_settings, "api-keys", "set-quota", key_id, "--rate", "0")
    assert code == 0
    _, listed = await cli(classifier_settings, "api-keys", "list")
    assert f"{key_id}\torders:write calls:write imports:write\t0/s\tactive" in listed

    code, out = await cli(
        classifier_settings, "api-keys", "create", "--name", "x", "--scope", "orders:read"
    )
    assert code != 0
    assert "scopes must be among" in out
