"""Shared fixtures: a throw-away PostgreSQL database and unique Kafka topics per test.

`make test` creates the database, exports TEST_DATABASE_URL and
KAFKA_BOOTSTRAP_SERVERS, and drops the database afterwards. Unit tests need
neither; integration and e2e tests use the real services and never mocks.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from classifier.auth import INTAKE_SCOPES, create_key
from classifier.config import ClassifierSettings
from classifier.models import Base
from classifier.topics import ensure_topics
from ingest.app import create_app as create_ingest_app
from ingest.config import IngestSettings

ROOT = Path(__file__).resolve().parents[1]
# Every table the models define, so a new one is never left holding a test's rows.
TABLES = tuple(Base.metadata.tables)
# The key of identity digests, one per test session (made up here, not a real
# secret; the stack's own when the environment already has one).
IDENTITY_KEY = (
    os.environ.get("INGEST_IDENTITY_KEY")
    or os.environ.get("CLASSIFIER_IDENTITY_KEY")
    or secrets.token_hex(32)
)


def pytest_configure(config: pytest.Config) -> None:
    """Every service process a test starts inherits the environment: the same key for
    ingest and classifier, as `make up` gives them."""
    os.environ["INGEST_IDENTITY_KEY"] = os.environ["CLASSIFIER_IDENTITY_KEY"] = IDENTITY_KEY


@pytest.fixture(scope="session")
def identity_key() -> bytes:
    """The HMAC key of identity digests, as ingest uses it (the UTF-8 bytes of the setting)."""
    return IDENTITY_KEY.encode()


@pytest.fixture(scope="session")
def database_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.fail("TEST_DATABASE_URL is not set: run the suite with `make test`")
    # The real migration path, as `make up` runs it.
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        check=True,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
    )
    return url


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


@pytest.fixture(scope="session")
async def db_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture
async def sessions(db_engine: AsyncEngine) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A clean database for each test (tables truncated before it runs)."""
    async with db_engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY"))
    return async_sessionmaker(db_engine, expire_on_commit=False)


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
async def classifier_settings(
    database_url: str, kafka_bootstrap: str, unique: str
) -> ClassifierSettings:
    """Settings with topics and a consumer group of this test's own."""
    settings = ClassifierSettings(
        database_url=database_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        activity_topic=f"test-{unique}-activity",
        class_changes_topic=f"test-{unique}-changes",
        dlq_topic=f"test-{unique}-dlq",
        consumer_group=f"test-{unique}-workers",
        activity_partitions=3,
        class_changes_partitions=3,
        poll_timeout_ms=50,
        review_interval_seconds=0.2,
        worker_metrics_port=0,
    )
    await ensure_topics(settings)
    return settings


@pytest.fixture
def ingest_settings(classifier_settings: ClassifierSettings) -> IngestSettings:
    return IngestSettings(
        kafka_bootstrap_servers=classifier_settings.kafka_bootstrap_servers,
        activity_topic=classifier_settings.activity_topic,
        database_url=classifier_settings.database_url,
        publish_timeout_seconds=5,
        identity_key=SecretStr(IDENTITY_KEY),
        # Per-test webhook credentials, made up here: none is a real secret.
        generic_webhook_secret=SecretStr(secrets.token_hex(16)),
        hubspot_client_secret=SecretStr(secrets.token_hex(16)),
        salesforce_organization_ids="00D5e000000KQ2eEAG",
        zoho_webhook_token=SecretStr(secrets.token_urlsafe(16)),
    )


@pytest.fixture
def root() -> Iterator[Path]:
    return ROOT


@pytest.fixture
async def intake_key(sessions: async_sessionmaker[AsyncSession]) -> str:
    """A real intake key (every *:write scope, no quota) in this test's database."""
    _, key = await create_key(sessions, "test-intake", INTAKE_SCOPES, rate_per_second=0)
    return key


@pytest.fixture
def intake_headers(intake_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {intake_key}"}


@pytest.fixture
async def ingest(
    ingest_settings: IngestSettings, intake_headers: dict[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    """The ingest app in-process (lifespan run), publishing to this test's real topic;
    the client sends an intake key."""
    app = create_ingest_app(ingest_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://ingest", headers=intake_headers
        ) as client:
            yield client
