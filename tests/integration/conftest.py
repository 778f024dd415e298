"""Fixtures of the integration tests that use the API in process or a worker in process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classifier.app import create_app
from classifier.auth import create_key
from classifier.config import ClassifierSettings
from classifier.worker import run_worker


@pytest.fixture
async def keys(sessions: async_sessionmaker[AsyncSession]) -> dict[str, str]:
    """A read and an admin key (`read`, `admin`) and their ids (`read_id`, `admin_id`)."""
    keys = {}
    for scope in ("read", "admin"):
        keys[f"{scope}_id"], keys[scope] = await create_key(sessions, f"test-{scope}", scope)
    return keys


@pytest.fixture
async def api(
    classifier_settings: ClassifierSettings, keys: dict[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    """The classifier API in process (real PostgreSQL and Kafka), as the admin key."""
    app = create_app(classifier_settings.model_copy(update={"api_key_cache_seconds": 0}))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://api",
            headers={"Authorization": f"Bearer {keys['admin']}"},
        ) as client,
    ):
        yield client


@pytest.fixture
async def worker(
    classifier_settings: ClassifierSettings, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[None]:
    """A classifier worker in process, consuming this test's topic until the test ends."""
    stopping = asyncio.Event()
    task = asyncio.create_task(run_worker(classifier_settings, stopping))
    yield
    stopping.set()
    await asyncio.wait_for(task, timeout=30)
