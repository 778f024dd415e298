"""WeCom and Fxiaoke signals through ingest, Kafka and the real worker into classes.

A salesperson adds the customer on WeCom (an encrypted callback to ingest),
then the customer's Fxiaoke opportunity is won (the sync connector reads it
from a server answering as Fxiaoke's OpenAPI). The worker must classify the
customer `priority` in relationship and `won` in the funnel, and say so in
explanations that name those signals; the customer deleting the salesperson
on WeCom then weakens the relationship.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.config import ClassifierSettings
from classifier.models import Customer
from classifier.worker import run_worker
from ingest.app import create_app
from ingest.config import IngestSettings
from ingest.fxiaoke.client import FxiaokeClient
from ingest.fxiaoke.cursors import CursorStore
from ingest.fxiaoke.mapping import load_mapping
from ingest.fxiaoke.sync import FxiaokeSync
from ingest.publisher import EventPublisher
from tests.fxiaoke_server import FakeFxiaoke
from tests.kafka_helpers import eventually
from tests.wecom_sample import SampleMsgCrypt, event_xml

pytestmark = pytest.mark.integration
CORP = "ww-e2e-corp"
EXTERNAL = "wmE2ECustomer0001"
CUSTOMER = f"wecom-{EXTERNAL}"


@pytest.fixture
async def worker(
    classifier_settings: ClassifierSettings, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[None]:
    stopping = asyncio.Event()
    task = asyncio.create_task(run_worker(classifier_settings, stopping))
    yield
    stopping.set()
    await asyncio.wait_for(task, timeout=30)


async def classes(sessions: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    async with sessions() as session:
        row = await session.get(Customer, CUSTOMER)
        return dict(row.classes) if row is not None else {}


async def test_wecom_add_then_won_fxiaoke_opportunity(
    worker: None,
    ingest_settings: IngestSettings,
    database_url: str,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Any,
) -> None:
    aes_key = base64.b64encode(os.urandom(32)).decode().rstrip("=")
    wecom = SampleMsgCrypt(secrets.token_urlsafe(12), aes_key, CORP)
    fxiaoke = FakeFxiaoke(
        app_id="FSAID_e2e", app_secret=secrets.token_hex(16), permanent_code=secrets.token_hex(8)
    )
    async with fxiaoke.serve():
        settings = ingest_settings.model_copy(
            update={
                "wecom_token": SecretStr(wecom.token),
                "wecom_encoding_aes_key": SecretStr(aes_key),
                "wecom_corp_id": CORP,
                "fxiaoke_base_url": fxiaoke.base_url,
                "fxiaoke_app_id": fxiaoke.app_id,
                "fxiaoke_app_secret": SecretStr(fxiaoke.app_secret),
                "fxiaoke_permanent_code": SecretStr(fxiaoke.permanent_code),
                "fxiaoke_open_user_id": fxiaoke.open_user_id,
                "database_url": database_url,
            }
        )
        app = create_app(settings)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://ingest"
            ) as ingest,
        ):
            # 1. A salesperson adds the customer on WeCom.
            added_at = int(time.time()) - 60
            query, body = wecom.signed_callback(
                event_xml("add_external_contact", added_at, external_user=EXTERNAL)
            )
            response = await ingest.post(f"/v1/webhooks/wecom?{query}", content=body)
            assert (response.status_code, response.text) == (200, "success")

            async def relationship_deepened() -> bool:
                return (await classes(sessions)).get("relationship", {}).get("class") == "priority"

            await eventually(relationship_deepened)
            assert (await classes(sessions))["lifecycle_stage"]["class"] == "potential"

            # 2. Fxiaoke: the account (linked to that WeCom contact) wins an opportunity.
            mapping_file = tmp_path / "mapping.yaml"
            mapping_file.write_text(
                load_mapping(None)
                .model_copy(update={"wecom_external_userid_field": "field_wx_external__c"})
                .model_dump_json()
            )
            modified = int(time.time() * 1000) - 30_000
            fxiaoke.add(
                "AccountObj",
                {
                    "_id": "acc-e2e",
                    "field_wx_external__c": EXTERNAL,
                    "last_modified_time": modified,
                },
            )
            fxiaoke.add(
                "NewOpportunityObj",
                {
                    "_id": "opp-e2e",
                    "account_id": "acc-e2e",
                    "sales_stage": "赢单",
                    "last_modified_time": modified + 1000,
                },
            )
            for name in ("ContactObj", "SalesOrderObj", "ActiveRecordObj"):
                fxiaoke.add(name)
            client = FxiaokeClient(settings)
            store = CursorStore.connect(database_url)
            publisher = EventPublisher(settings)
            try:
                sync = FxiaokeSync(settings, load_mapping(mapping_file), client, store, publisher)
                assert (await sync.run_once()).published == 2
            finally:
                await publisher.stop()
                await client.aclose()
                await store.close()

            async def won() -> bool:
                return (await classes(sessions)).get("lifecycle_stage", {}).get("class") == "won"

            await eventually(won)
            current = await classes(sessions)
            relationship = current["relationship"]
            assert relationship["class"] == "priority"
            assert relationship["rule"] == "added_by_salesperson"
            assert relationship["explanation"]["label"] == "销售已添加企业微信"
            assert relationship["explanation"]["features"] == {"sales_contacts": 1}
            funnel = current["lifecycle_stage"]
            assert funnel["rule"] == "has_bought"
            assert funnel["explanation"]["label"] == "成交客户"
            assert funnel["explanation"]["features"]["deal_stage"] == "won"
            assert "deal_stage" in funnel["explanation"]["summary"]

            # 3. The customer deletes the salesperson on WeCom: the relationship weakens
            # (held for the scheme's 30-day dwell, and the explanation says why).
            query, body = wecom.signed_callback(
                event_xml("del_follow_user", int(time.time()) - 5, external_user=EXTERNAL)
            )
            response = await ingest.post(f"/v1/webhooks/wecom?{query}", content=body)
            assert response.status_code == 200

            async def weakened() -> dict[str, Any] | None:
                rel = (await classes(sessions)).get("relationship", {})
                return rel if rel.get("explanation", {}).get("would_be") == "ordinary" else None

            rel = await eventually(weakened)
            assert rel["class"] == "priority"
            assert rel["explanation"]["kept_by"] == "min_dwell"
            assert rel["explanation"]["label"] == "客户已删除销售的企业微信"
            assert rel["explanation"]["features"] == {
                "contacts_removed_by_customer": 1,
                "sales_contacts": 0,
            }
