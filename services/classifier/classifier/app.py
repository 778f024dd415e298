"""The classifier's FastAPI application."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaClient
from fastapi import FastAPI

from classifier.config import ClassifierSettings
from classifier.customers.router import router as customers_router
from classifier.db import make_engine, make_sessionmaker
from classifier.health.router import router as health_router
from eventschemas.http import install_problem_handlers


def create_app(settings: ClassifierSettings | None = None) -> FastAPI:
    """Build the app; the lifespan owns the database engine and a Kafka metadata client."""
    settings = settings or ClassifierSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings)
        app.state.sessions = make_sessionmaker(engine)
        client = AIOKafkaClient(bootstrap_servers=settings.kafka_bootstrap_servers)
        with contextlib.suppress(Exception):  # readyz reports a broker that is down
            await client.bootstrap()
        app.state.kafka_client = client
        try:
            yield
        finally:
            await client.close()
            await engine.dispose()

    app = FastAPI(
        title="Customer classifier",
        version="0.1.0",
        description="Current classes of customers per dimension, with explanations.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_problem_handlers(app)
    app.include_router(health_router)
    app.include_router(customers_router)
    return app
