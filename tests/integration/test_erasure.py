"""Erasure with a receipt, suppression and export, on real Kafka and PostgreSQL (the
API in process, a worker in process)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from classifier.clock import system_clock
from classifier.config import ClassifierSettings
from classifier.consumer.replay import replay
from classifier.db import make_sessionmaker
from eventschemas.envelope import Envelope
from eventschemas.events import ActivityEvent, CallOutcome, Identity, identity_digest
from tests.integration.test_identity import call, contact, order
from tests.kafka_helpers import eventually, publish_raw, read_topic
from tests.snapshots import create_database, drop_database

pytestmark = pytest.mark.integration


async def publish(settings: ClassifierSettings, events: list[ActivityEvent]) -> None:
    await publish_raw(
        settings.kafka_bootstrap_servers,
        settings.activity_topic,
        [(e.customer_id.encode(), e.to_envelope("erasure-test").to_bytes()) for e in events],
    )


async def applied(sessions: async_sessionmaker[AsyncSession], count: int) -> bool:
    async with sessions() as session:
        return int(await session.scalar(text("SELECT count(*) FROM inbox")) or 0) >= count


async def suppressed(sessions: async_sessionmaker[AsyncSession], count: int) -> bool:
    """Suppressed events are claimed in the inbox without their customer id."""
    async with sessions() as session:
        held = await session.scalar(text("SELECT count(*) FROM inbox WHERE customer_id = ''"))
    return int(held or 0) >= count


async def leftovers(url: str, needles: list[str]) -> list[str]:
    """Every (table.column, needle) where a needle is found, over every text-like column
    of every table in the catalogue."""
    engine = create_async_engine(url)
    found: list[str] = []
    try:
        async with engine.connect() as conn:
            columns = (
                await conn.execute(
                    text(
                        "SELECT table_name, column_name FROM information_schema.columns "
                        "WHERE table_schema = 'public' AND table_name <> 'alembic_version' "
                        "AND data_type IN ('text', 'character varying', 'jsonb', 'ARRAY', "
                        "'uuid')"
                    )
                )
            ).all()
            for table, column in columns:
                for needle in needles:
                    hits = await conn.scalar(
                        text(
                            f'SELECT count(*) FROM "{table}" '
                            f'WHERE position(:n IN "{column}"::text) > 0'
                        ),
                        {"n": needle},
                    )
                    if hits:
                        found.append(f"{table}.{column} holds {needle}")
    finally:
        await engine.dispose()
    return found


async def test_an_erasure_by_email_leaves_nothing_and_suppresses_what_follows(
    classifier_settings: ClassifierSettings,
    sessions: async_sessionmaker[AsyncSession],
    worker: None,
    api: httpx.AsyncClient,
    identity_key: bytes,
) -> None:
    tag = uuid.uuid4().hex[:8]
    shop, desk = f"shop-{tag}", f"desk-{tag}"
    address = f"li.{tag}@example.cn"
    mail = identity_digest(identity_key, "email", address)
    tel = identity_digest(identity_key, "phone", f"+86138{int(tag, 16) % 100_000_000:08d}")
    both = Identity(email_hash=mail, phone_hash=tel)
    history = [
        order(shop, 1, Identity(email_hash=mail)),
        order(shop, 2),
        contact(shop, both),
        call(desk, 1, Identity(phone_hash=tel), CallOutcome.INTERESTED),  # joins the shop's
    ]
    await publish(classifier_settings, history)
    await eventually(lambda: applied(sessions, len(history)), within=60)
    override = await api.put(
        f"/v1/customers/{shop}/overrides/value", json={"class": "high", "reason": "VIP"}
    )
    assert override.status_code == 200, override.text
    export = await api.get(f"/v1/customers/{desk}/export")
    assert export.status_code == 200
    held = export.json()
    assert held["customer_id"] == desk  # the survivor (ids sort: desk- before shop-)
    assert set(held["ids"]) == {shop, desk}
    assert len(held["facts_log"]) == 4
    assert held["state"]["classes"]["value"]["class"] == "high"
    assert held["class_history"]
    assert {i["digest"] for i in held["identifiers"]} == {mail, tel}

    # The request names only the e-mail (spelled differently): it reaches the shop's id.
    asked = await api.post("/v1/erasures", json={"email": f" Li.{tag}@Example.CN"})
    assert asked.status_code == 202, asked.text
    receipt_url = asked.headers["location"]

    async def completed() -> dict[str, Any] | None:
        receipt = (await api.get(receipt_url)).json()
        return receipt if receipt["status"] == "completed" else None

    receipt = await eventually(completed, within=60)
    assert receipt["erased"]["facts"] == 4
    assert receipt["erased"]["ids"] == 2
    assert receipt["erased"]["customers"] == 2
    assert receipt["completed_at"] >= receipt["requested_at"]

    needles = [shop, desk, mail, tel]
    assert await leftovers(classifier_settings.database_url, needles) == []

    async def erased_records() -> list[Envelope] | None:
        records = await read_topic(
            classifier_settings.kafka_bootstrap_servers,
            classifier_settings.class_changes_topic,
            expected=10**6,  # whatever is there within a few seconds
            within=5,
        )
        found = [Envelope.from_bytes(r.value) for r in records]
        erased = [e for e in found if e.type == "customer.erased"]
        return erased if len(erased) >= 2 else None

    erased = await eventually(erased_records, within=30)
    assert {e.subject for e in erased} == {shop, desk}
    assert all(e.data["erasure_id"] == receipt["id"] for e in erased)
    assert await leftovers(classifier_settings.database_url, needles) == []  # relayed, gone

    # Later events of the erased ids or identifiers are dropped and change nothing.
    later = [order(shop, 3), call(f"new-{tag}", 2, Identity(email_hash=mail), CallOutcome.BUSY)]
    await publish(classifier_settings, later)
    await eventually(lambda: suppressed(sessions, len(later)), within=60)
    assert await leftovers(classifier_settings.database_url, [*needles, f"new-{tag}"]) == []

    # A replay of the whole activity topic into an empty database brings nobody back.
    url = await create_database(classifier_settings.database_url)
    try:
        engine = create_async_engine(url)
        try:
            settings = classifier_settings.model_copy(update={"database_url": url})
            await replay(settings, make_sessionmaker(engine), system_clock())
        finally:
            await engine.dispose()
        assert await leftovers(url, [*needles, f"new-{tag}"]) == []
    finally:
        await drop_database(classifier_settings.database_url, url)

    # The person comes back with consent: the suppression is lifted for the e-mail.
    lifted = await api.post("/v1/suppressions:lift", json={"email": address})
    assert lifted.json() == {"lifted": 1}
    trail = (await api.get("/v1/audit", params={"limit": 1000})).json()
    actions = [e["action"] for e in trail["entries"]]
    assert actions.count("customer.erasure") == 1
    assert actions.count("suppression.lift") == 1


async def test_bad_erasure_requests_are_refused(api: httpx.AsyncClient) -> None:
    both = await api.post("/v1/erasures", json={"customer_id": "a", "email": "a@b.cn"})
    assert both.status_code == 422
    assert "exactly one" in both.text
    bad = await api.post("/v1/erasures", json={"phone": "12"})
    assert bad.status_code == 400
    assert "phone" in bad.json()["detail"]
    unknown = await api.get(f"/v1/erasures/{uuid.uuid4()}")
    assert unknown.status_code == 404
    assert orjson.loads(unknown.content)["title"] == "Not found"
