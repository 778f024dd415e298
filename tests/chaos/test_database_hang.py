"""A database that accepts connections but never answers: the API answers 503 within
its timeout (never hangs), and the worker resumes within seconds of the database's return."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.app import create_app
from classifier.config import ClassifierSettings
from classifier.worker import run_worker
from tests.chaos.conftest import report
from tests.integration.test_database_outage import applied, orders
from tests.kafka_helpers import eventually, publish_raw
from tests.tcp_proxy import proxy_in_front_of

pytestmark = pytest.mark.chaos


async def test_hung_database_is_a_503_and_the_worker_resumes_quickly(
    classifier_settings: ClassifierSettings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    proxy, via_proxy = await proxy_in_front_of(classifier_settings.database_url)
    settings = classifier_settings.model_copy(
        update={
            "database_url": via_proxy,
            "auth_enabled": False,
            "api_db_timeout_seconds": 2.0,
            "db_timeout_seconds": 3.0,
        }
    )
    app = create_app(settings)
    stopping = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stopping))
    bootstrap, topic = settings.kafka_bootstrap_servers, settings.activity_topic
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
                await publish_raw(bootstrap, topic, orders("before", 20))
                await eventually(lambda: _applied_is(sessions, 20), within=30)
                assert (await api.get("/v1/customers/before-1")).status_code == 200

                proxy.hold()
                await publish_raw(bootstrap, topic, orders("during", 20))
                for path in ("/v1/customers/before-1", "/v1/classes/counts", "/v1/changes"):
                    started = time.monotonic()
                    answer = await asyncio.wait_for(api.get(path), timeout=15)
                    took = time.monotonic() - started
                    assert answer.status_code == 503, (path, answer.text)
                    assert answer.headers["retry-after"]
                    assert took < 2.0 * 2 + 1, f"{path} took {took:.1f}s"
                    report(f"hung_database.api_503_seconds[{path}]", took)
                await asyncio.sleep(4)  # the worker's statements time out meanwhile
                assert await applied(sessions) == 20

                proxy.release()
                released = time.monotonic()
                await eventually(lambda: _applied_is(sessions, 40), within=30, interval=0.05)
                resumed = time.monotonic() - released
                report("hung_database.worker_resumed_seconds", resumed)
                assert resumed < 5
                assert (await api.get("/v1/customers/during-1")).status_code == 200
    finally:
        proxy.release()
        stopping.set()
        await asyncio.wait_for(worker, timeout=30)
        await proxy.cut()


async def _applied_is(sessions: async_sessionmaker[AsyncSession], expected: int) -> bool:
    return await applied(sessions) == expected
