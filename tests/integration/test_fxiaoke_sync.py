"""Fxiaoke incremental sync against a local server that answers as Fxiaoke's OpenAPI does,
the real broker and the real PostgreSQL cursor store."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from eventschemas.envelope import Envelope
from eventschemas.events import suppression_digest
from ingest.config import IngestSettings
from ingest.fxiaoke.client import FxiaokeClient, FxiaokeError
from ingest.fxiaoke.cursors import CursorStore
from ingest.fxiaoke.mapping import FxiaokeMapping, load_mapping
from ingest.fxiaoke.sync import FxiaokeSync
from ingest.publisher import EventPublisher
from tests.fxiaoke_server import SYSTEM_ERROR, FakeFxiaoke
from tests.identities import digested
from tests.kafka_helpers import read_topic, topic_size
from tests.processes import ROOT, free_port

pytestmark = pytest.mark.integration
NOW_MS = int(time.time() * 1000)
DAY_MS = 86_400_000


def ago(days: float) -> int:
    return int(NOW_MS - days * DAY_MS)


def account(rid: str, modified: int, **fields: Any) -> dict[str, Any]:
    return {
        "_id": rid,
        "name": "上海某某制造有限公司",
        "industry_level1": "Manufacturing",
        "account_level": "A",
        "employee_number": "320",
        "owner": ["FSUID_1001"],
        "tel": "021-5555 0100",
        "last_modified_time": modified,
        "create_time": modified - DAY_MS,
        **fields,
    }


def standard_records(server: FakeFxiaoke) -> None:
    server.add("AccountObj", account("acc-1", ago(10)), account("acc-2", ago(9)))
    server.add(
        "ContactObj",
        {
            "_id": "con-1",
            "name": "张三",
            "account_id": "acc-1",
            "mobile1": "138 0013 8000",
            "email": "Zhang.San@Example.CN",
            "last_modified_time": ago(8),
        },
    )
    server.add(
        "NewOpportunityObj",
        {
            "_id": "opp-1",
            "name": "年度框架合同",
            "account_id": "acc-1",
            "sales_stage": "赢单",
            "amount": "100000",
            "last_modified_time": ago(7),
        },
    )
    server.add(
        "SalesOrderObj",
        {
            "_id": "so-1",
            "account_id": "acc-1",
            "order_amount": "50000",
            "order_time": ago(6),
            "life_status": "normal",
            "last_modified_time": ago(6),
        },
        {
            "_id": "so-2",
            "account_id": "acc-2",
            "order_amount": "800",
            "order_time": ago(5),
            "life_status": "invalid",
            "last_modified_time": ago(5),
        },
    )
    server.add(
        "ActiveRecordObj",
        {
            "_id": "ar-1",
            "account_id": "acc-2",
            "active_record_type": "visit",
            "active_record_content": "拜访了王经理 电话 13900001111 对报价有兴趣",
            "owner": ["FSUID_1002"],
            "create_time": ago(4),
            "last_modified_time": ago(4),
        },
    )


@pytest.fixture
async def server() -> AsyncIterator[FakeFxiaoke]:
    fake = FakeFxiaoke(
        app_id=f"FSAID_{secrets.token_hex(4)}",
        app_secret=secrets.token_hex(16),  # made up per test
        permanent_code=secrets.token_hex(16).upper(),
    )
    async with fake.serve():
        yield fake


@pytest.fixture
def settings(
    ingest_settings: IngestSettings, server: FakeFxiaoke, database_url: str
) -> IngestSettings:
    return ingest_settings.model_copy(
        update={
            "fxiaoke_base_url": server.base_url,
            "fxiaoke_app_id": server.app_id,
            "fxiaoke_app_secret": SecretStr(server.app_secret),
            "fxiaoke_permanent_code": SecretStr(server.permanent_code),
            "fxiaoke_open_user_id": server.open_user_id,
            "fxiaoke_page_size": 2,
            "fxiaoke_backoff_seconds": 0.05,
            "fxiaoke_rate_limit_codes": [server.rate_limit_code],
            "database_url": database_url,
        }
    )


class Connector:
    """One connector process's worth of parts; `restart()` makes a fresh one."""

    def __init__(self, settings: IngestSettings, mapping: FxiaokeMapping | None = None) -> None:
        assert settings.database_url is not None
        self.settings = settings
        self.mapping = mapping or load_mapping(None)
        self.store = CursorStore.connect(settings.database_url)
        self.publisher = EventPublisher(settings)
        self.client = FxiaokeClient(settings)
        self.sync = FxiaokeSync(settings, self.mapping, self.client, self.store, self.publisher)

    async def close(self) -> None:
        await self.publisher.stop()
        await self.client.aclose()
        await self.store.close()

    async def restart(self) -> Connector:
        await self.close()
        return Connector(self.settings, self.mapping)


@pytest.fixture
async def connector(settings: IngestSettings) -> AsyncIterator[Connector]:
    parts = Connector(settings)
    yield parts
    await parts.close()


async def topic(settings: IngestSettings, expected: int) -> list[Envelope]:
    records = await read_topic(
        settings.kafka_bootstrap_servers, settings.activity_topic, expected=expected
    )
    return [Envelope.from_bytes(r.value) for r in records]


async def size(settings: IngestSettings) -> int:
    return await topic_size(settings.kafka_bootstrap_servers, settings.activity_topic)


def by_type(envelopes: list[Envelope]) -> dict[str, list[Envelope]]:
    out: dict[str, list[Envelope]] = {}
    for e in envelopes:
        out.setdefault(e.type, []).append(e)
    return out


async def test_every_object_becomes_the_right_events(
    server: FakeFxiaoke, settings: IngestSettings, connector: Connector, identity_key: bytes
) -> None:
    standard_records(server)

    report = await connector.sync.run_once()

    assert report.published == 7
    events = by_type(await topic(settings, 7))
    companies = sorted(events["crm.company.updated"], key=lambda e: e.subject)
    assert [e.subject for e in companies] == ["fxiaoke-acc-1", "fxiaoke-acc-2"]
    assert companies[0].source == "crm/fxiaoke"
    assert companies[0].data["attributes"] == {
        "industry": "manufacturing",
        "account_level": "A",
        "employee_count": 320,
        "owner": "FSUID_1001",
    }
    [contact] = events["crm.contact.updated"]
    assert contact.subject == "fxiaoke-acc-1"
    assert contact.data["identity"] == digested(
        identity_key, phone="+8613800138000", email="zhang.san@example.cn"
    )
    [deal] = events["crm.deal.stage_changed"]
    assert (deal.subject, deal.data["stage"], deal.data["deal_id"]) == (
        "fxiaoke-acc-1",
        "won",
        "opp-1",
    )
    assert deal.data["amount_base"] == "13800.0000"  # 100,000 CNY at the default rate
    orders = {e.data["order_id"]: e for e in events["order.placed"]}
    assert orders["so-1"].data["status"] == "paid"
    assert orders["so-1"].data["amount"] == "50000"
    assert orders["so-2"].data["status"] == "cancelled"
    assert orders["so-2"].subject == "fxiaoke-acc-2"
    [touch] = events["crm.touchpoint.logged"]
    assert (touch.subject, touch.data["kind"], touch.data["owner_id"]) == (
        "fxiaoke-acc-2",
        "visit",
        "FSUID_1002",
    )
    # Names, the company phone, follow-up notes and the contact's phone and e-mail
    # (only their keyed digests travel) never reach the topic.
    # The phone is looked for whole and as digits: a four-digit fragment could
    # occur by chance in a millisecond revision.
    wire = b"".join(e.to_bytes() for es in events.values() for e in es).decode()
    for personal in (
        "张三",
        "上海某某制造",
        "5555 0100",
        "2155550100",
        "王经理",
        "13900001111",
        "拜访",
    ):
        assert personal not in wire
    for personal in ("138 0013 8000", "13800138000", "zhang.san", "example.cn"):
        assert personal not in wire.lower()
    assert server.tokens_issued == 1

    # A second run publishes nothing new.
    again = await connector.sync.run_once()
    assert again.published == 0
    assert await size(settings) == 7


async def test_a_changed_record_publishes_its_new_version_only(
    server: FakeFxiaoke, settings: IngestSettings, connector: Connector
) -> None:
    standard_records(server)
    await connector.sync.run_once()
    server.update("SalesOrderObj", "so-1", life_status="invalid", last_modified_time=ago(1))

    report = await connector.sync.run_once()

    assert report.published == 1
    events = await topic(settings, 8)
    cancelled = [e for e in events if e.type == "order.placed" and e.data["order_id"] == "so-1"]
    assert [e.data["status"] for e in cancelled] == ["paid", "cancelled"]
    assert cancelled[0].id != cancelled[1].id
    assert cancelled[1].data["revision"] > cancelled[0].data["revision"]


async def test_records_sharing_a_modification_instant_across_pages_are_all_published_once(
    server: FakeFxiaoke, settings: IngestSettings, connector: Connector
) -> None:
    same = ago(3)
    server.add("AccountObj", *(account(f"acc-{i}", same) for i in range(5)))
    server.add("AccountObj", account("acc-late", ago(2)))
    for name in ("ContactObj", "NewOpportunityObj", "SalesOrderObj", "ActiveRecordObj"):
        server.add(name)

    report = await connector.sync.run_once()

    assert report.published == 6
    subjects = [e.subject for e in await topic(settings, 6)]
    assert sorted(subjects) == sorted([f"fxiaoke-acc-{i}" for i in range(5)] + ["fxiaoke-acc-late"])
    # Pages of 2: the queries moved on by cursor, never skipping the tie at `same`.
    assert all(q["data"]["search_query_info"]["limit"] == 2 for q in server.queries)


async def test_a_restart_mid_sync_neither_misses_nor_duplicates(
    server: FakeFxiaoke, settings: IngestSettings, connector: Connector
) -> None:
    standard_records(server)
    server.add("AccountObj", *(account(f"acc-x{i}", ago(9.5)) for i in range(3)))
    server.fail_after = 3  # the 4th query fails: the first run stops half-way

    with pytest.raises(FxiaokeError) as failure:
        await connector.sync.run_once()
    assert failure.value.code == SYSTEM_ERROR
    published_before = await size(settings)
    assert 0 < published_before < 10

    restarted = await connector.restart()
    try:
        await restarted.sync.run_once()
        assert (await restarted.sync.run_once()).published == 0
    finally:
        await restarted.close()

    events = await topic(settings, 10)
    assert len(events) == 10 == await size(settings)
    assert len({e.id for e in events}) == 10


async def test_an_expired_token_is_renewed_and_the_sync_goes_on(
    server: FakeFxiaoke, settings: IngestSettings, connector: Connector
) -> None:
    standard_records(server)
    await connector.client.corp_id()
    server.expire_tokens()  # Fxiaoke revoked it early: the next query answers 20016

    report = await connector.sync.run_once()

    assert report.published == 7
    assert server.tokens_issued == 2


async def test_the_token_is_renewed_before_it_expires(
    server: FakeFxiaoke, settings: IngestSettings, connector: Connector
) -> None:
    server.expires_in = 1
    standard_records(server)
    await connector.sync.run_once()
    issued = server.tokens_issued
    await asyncio.sleep(1)
    queries = len(server.queries)

    await connector.sync.run_once()

    assert server.tokens_issued == issued + 1
    # The renewed token was used at once: no query was refused as expired.
    assert len(server.queries) - queries == len(load_mapping(None).objects)


@pytest.mark.parametrize("as_http_429", [False, True])
async def test_rate_limits_are_waited_out_with_growing_backoff(
    server: FakeFxiaoke, settings: IngestSettings, connector: Connector, as_http_429: bool
) -> None:
    standard_records(server)
    server.rate_limited, server.rate_limit_http = 3, as_http_429

    started = time.monotonic()
    report = await connector.sync.run_once()

    assert report.published == 7
    waits = connector.client.backoffs
    assert len(waits) == 3
    if as_http_429:
        assert waits == [0.05, 0.05, 0.05]  # the server's Retry-After
    else:
        assert waits == [0.05, 0.1, 0.2]  # doubling, no tight loop
    assert time.monotonic() - started >= sum(waits)


async def test_an_error_keeps_the_cursor_so_nothing_is_lost(
    server: FakeFxiaoke, settings: IngestSettings, connector: Connector
) -> None:
    standard_records(server)
    server.fail_after = 0

    with pytest.raises(FxiaokeError):
        await connector.sync.run_once()
    assert await size(settings) == 0

    assert (await connector.sync.run_once()).published == 7


async def test_custom_fields_and_the_wecom_link_come_from_the_mapping_file(
    server: FakeFxiaoke, settings: IngestSettings, tmp_path: Path
) -> None:
    text = (ROOT / "services/ingest/ingest/fxiaoke/mapping.yaml").read_text()
    text = text.replace(
        "wecom_external_userid_field: null", "wecom_external_userid_field: field_wx__c"
    ).replace(
        "      area_location: region\n",
        "      area_location: region\n      field_need__c: need_type\n",
    )
    mapping_file = tmp_path / "mapping.yaml"
    mapping_file.write_text(text)
    server.add(
        "AccountObj", account("acc-1", ago(3), field_wx__c="wmEXTERNAL1", field_need__c="质量")
    )
    server.add(
        "NewOpportunityObj",
        {
            "_id": "o-1",
            "account_id": "acc-1",
            "sales_stage": "商务谈判",
            "last_modified_time": ago(2),
        },
    )
    for name in ("ContactObj", "SalesOrderObj", "ActiveRecordObj"):
        server.add(name)
    connector = Connector(settings, load_mapping(mapping_file))
    try:
        await connector.sync.run_once()
    finally:
        await connector.close()

    company, deal = sorted(await topic(settings, 2), key=lambda e: e.type)
    assert company.subject == deal.subject == "wecom-wmEXTERNAL1"
    assert company.data["attributes"]["need_type"] == "质量"
    assert deal.data["stage"] == "negotiation"


async def test_cli_backfills_with_a_progress_bar(
    server: FakeFxiaoke, settings: IngestSettings
) -> None:
    standard_records(server)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "KAFKA_ACTIVITY_TOPIC": settings.activity_topic,
        "DATABASE_URL": str(settings.database_url),
        "INGEST_FXIAOKE_BASE_URL": server.base_url,
        "INGEST_FXIAOKE_APP_ID": server.app_id,
        "INGEST_FXIAOKE_APP_SECRET": server.app_secret,
        "INGEST_FXIAOKE_PERMANENT_CODE": server.permanent_code,
        "INGEST_FXIAOKE_OPEN_USER_ID": server.open_user_id,
        "COLUMNS": "120",
    }
    since = datetime.fromtimestamp((NOW_MS - 6.5 * DAY_MS) / 1000, UTC).isoformat()

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ingest.cli", "fxiaoke", "sync", "--since", since,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), timeout=120)

    assert proc.returncode == 0, err.decode()[-2000:]
    report = err.decode()
    assert "SalesOrderObj: 2 read, 2 published" in report
    assert "AccountObj: 0 read" in report  # modified before --since
    assert "ActiveRecordObj" in report
    assert "━" in report  # the bar
    events = await topic(settings, 3)
    assert sorted(e.type for e in events) == [
        "crm.touchpoint.logged",
        "order.placed",
        "order.placed",
    ]

    bad = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ingest.cli", "fxiaoke", "sync", "--since", "last tuesday",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, bad_err = await bad.communicate()
    assert bad.returncode == 2
    assert "ISO 8601" in bad_err.decode()

    refused = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ingest.cli", "fxiaoke", "sync",
        env={**env, "INGEST_FXIAOKE_APP_SECRET": "not-the-secret"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, refused_err = await refused.communicate()
    assert refused.returncode == 1
    assert "Fxiaoke error 20001" in refused_err.decode()
    assert "not-the-secret" not in refused_err.decode()


async def test_the_run_process_polls_serves_metrics_and_stops_on_sigterm(
    server: FakeFxiaoke, settings: IngestSettings
) -> None:
    standard_records(server)
    metrics_port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "KAFKA_ACTIVITY_TOPIC": settings.activity_topic,
        "DATABASE_URL": str(settings.database_url),
        "INGEST_FXIAOKE_BASE_URL": server.base_url,
        "INGEST_FXIAOKE_APP_ID": server.app_id,
        "INGEST_FXIAOKE_APP_SECRET": server.app_secret,
        "INGEST_FXIAOKE_PERMANENT_CODE": server.permanent_code,
        "INGEST_FXIAOKE_OPEN_USER_ID": server.open_user_id,
        "INGEST_FXIAOKE_POLL_INTERVAL_SECONDS": "0.3",
        "INGEST_FXIAOKE_METRICS_PORT": str(metrics_port),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ingest.cli", "fxiaoke", "run",
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert len(await topic(settings, 7)) == 7
        later = {"_id": "ar-2", "account_id": "acc-1", "last_modified_time": ago(0.01)}
        server.add("ActiveRecordObj", later)
        events = await topic(settings, 8)
        assert "ar-2" in {e.data.get("touchpoint_id") for e in events}
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
        assert 'ingest_fxiaoke_records_total{object="ActiveRecordObj"} 2.0' in metrics
        assert 'ingest_fxiaoke_sync_passes_total{outcome="ok"}' in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert await size(settings) == 8  # every pass after the first published nothing twice


async def test_records_of_an_erased_customer_are_not_published(
    server: FakeFxiaoke,
    settings: IngestSettings,
    connector: Connector,
    identity_key: bytes,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    standard_records(server)
    async with sessions() as session, session.begin():
        await session.execute(
            text("INSERT INTO suppressions (kind, digest) VALUES ('customer', :digest)"),
            {"digest": suppression_digest(identity_key, "customer", "fxiaoke-acc-2")},
        )

    report = await connector.sync.run_once()

    # acc-2's company update, order so-2 and touch point stay out; acc-1's four go.
    assert report.published == 4
    assert sum(o.suppressed for o in report.objects.values()) == 3
    events = await topic(settings, 4)
    assert await size(settings) == 4
    assert {e.subject for e in events} == {"fxiaoke-acc-1"}
