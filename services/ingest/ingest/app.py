"""The ingest service's FastAPI application."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from pydantic import ValidationError

from eventschemas import collector
from eventschemas.http import document_problems, install_problem_handlers, problem_response
from eventschemas.metrics import RequestMetrics
from eventschemas.problems import field_errors, validation_problem
from eventschemas.serving import BodyTimeout
from ingest.calls.router import router as calls_router
from ingest.config import IngestSettings
from ingest.fast import FastIntake
from ingest.fingerprints import Fingerprints
from ingest.health.router import router as health_router
from ingest.imports.router import router as imports_router
from ingest.keys import KeyStore, open_pool
from ingest.metrics import HTTP
from ingest.middleware import BodyLimit, RejectMetrics
from ingest.orders.router import router as orders_router
from ingest.publisher import EventPublisher
from ingest.quotas import Quotas
from ingest.suppressions import Suppressions
from ingest.webhooks.router import router as webhooks_router


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    """Build the app; the lifespan owns the Kafka producer."""
    settings = settings or IngestSettings()
    # aiokafka logs produced payloads (call notes, phone numbers) at DEBUG:
    # keep it above DEBUG whatever the root level is, so PII never reaches logs.
    logging.getLogger("aiokafka").setLevel(logging.INFO)

    if settings.auth_enabled and not settings.database_url:
        raise RuntimeError(
            "intake keys live in the classifier's database: set DATABASE_URL (or "
            "INGEST_DATABASE_URL), or INGEST_AUTH_ENABLED=false on a trusted network only"
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        publisher = EventPublisher(settings)
        await publisher.start()
        app.state.publisher = publisher
        pool = None
        if settings.database_url and (
            settings.auth_enabled or settings.conflict_check or settings.suppression_check
        ):
            pool = await open_pool(
                settings.database_url,
                size=settings.database_pool_size,
                call_timeout=settings.database_timeout_seconds,
            )
        timeout, retry_after = settings.database_timeout_seconds, settings.retry_after_seconds
        app.state.key_store = pool and KeyStore(
            pool, ttl=settings.api_key_cache_seconds, timeout=timeout, retry_after=retry_after
        )
        app.state.fingerprints = (
            Fingerprints(pool, timeout=timeout, retry_after=retry_after)
            if pool and settings.conflict_check
            else None
        )
        app.state.suppressions = (
            Suppressions(
                pool, settings.identity_key_bytes(), timeout=timeout, retry_after=retry_after
            )
            if pool and settings.suppression_check
            else None
        )
        app.state.quotas = Quotas(settings.default_rate_per_second, settings.default_burst)
        pruning = None
        if app.state.fingerprints and settings.fingerprint_retention_days:
            pruning = asyncio.create_task(
                app.state.fingerprints.prune_forever(settings.fingerprint_retention_days, 3600)
            )
        collector.settle()  # startup done: its objects are never walked again
        try:
            yield
        finally:
            if pruning is not None:
                pruning.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pruning
            await publisher.stop()
            if pool is not None:
                await pool.close()

    app = FastAPI(
        title="Customer classifier: ingest",
        version="0.1.0",
        description="Accepts orders, call logs and CRM webhooks and publishes them as "
        "versioned CloudEvents on Kafka, keyed by customer.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_problem_handlers(app)

    async def on_event_invalid(request: Request, exc: Exception) -> Response:
        # Input the request schema let through but the event contract refuses
        # (built from several fields, or mapped from a CRM payload): a 422.
        assert isinstance(exc, ValidationError)
        errors = field_errors(exc.errors())
        return problem_response(validation_problem(errors, instance=request.url.path))

    app.add_exception_handler(ValidationError, on_event_invalid)
    document_problems(app, {"403": "The API key lacks this endpoint's scope."})
    app.include_router(health_router)
    app.include_router(orders_router)
    app.include_router(calls_router)
    app.include_router(imports_router)
    app.include_router(webhooks_router)
    # Innermost: single orders and calls skip the routing but not the middlewares below.
    app.add_middleware(FastIntake)
    app.add_middleware(BodyTimeout, timeout=settings.body_timeout_seconds)
    # Outermost last: metrics see the 413s the size limit answers.
    app.add_middleware(
        BodyLimit,
        default_limit=settings.max_body_bytes,
        limits={"/v1/imports/": settings.max_import_bytes},
    )
    app.add_middleware(RejectMetrics)
    app.add_middleware(RequestMetrics, metrics=HTTP)
    return app
