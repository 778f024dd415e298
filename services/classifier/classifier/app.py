"""The classifier's FastAPI application."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import sqlalchemy.exc
from aiokafka import AIOKafkaClient
from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware

from classifier.attributes.router import router as attributes_router
from classifier.audit_router import router as audit_router
from classifier.auth import KeyVerifier
from classifier.changes.router import router as changes_router
from classifier.classes.router import router as classes_router
from classifier.clock import system_clock
from classifier.config import ClassifierSettings
from classifier.console import router as console
from classifier.customers import reads
from classifier.customers.fast import FastLookups
from classifier.customers.router import router as customers_router
from classifier.db import dsn, is_unavailable, make_engine, make_sessionmaker, sqlstate
from classifier.errors import DatabaseUnavailable, database_input_problem
from classifier.health.router import router as health_router
from classifier.identity.router import router as identity_router
from classifier.jobs.router import router as jobs_router
from classifier.metrics import HTTP
from classifier.privacy.publisher import ActivityPublisher
from classifier.privacy.router import router as privacy_router
from classifier.processing.batch import BatchProcessor, IdentityOptions
from classifier.schemes.router import router as schemes_router
from classifier.schemes.service import SchemeCache
from classifier.webhooks.router import router as webhooks_router
from eventschemas import collector
from eventschemas.http import document_problems, install_problem_handlers, problem_response
from eventschemas.metrics import RequestMetrics
from eventschemas.problems import Problem
from eventschemas.serving import BodyTimeout

log = logging.getLogger(__name__)


def create_app(settings: ClassifierSettings | None = None) -> FastAPI:
    """Build the app; the lifespan owns the database engine and a Kafka metadata client."""
    settings = settings or ClassifierSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Requests wait at most api_db_timeout_seconds for the database (then 503);
        # background work (overrides) has the worker's longer bound. Activations and
        # recomputes are jobs a worker runs (classifier.jobs.runner).
        engine = make_engine(settings, timeout=settings.api_db_timeout_seconds)
        background_engine = make_engine(settings)
        sessions = make_sessionmaker(engine)
        app.state.sessions = sessions
        app.state.schemes = SchemeCache()
        app.state.processor = BatchProcessor(
            make_sessionmaker(background_engine),
            app.state.schemes,
            identity=IdentityOptions.of(settings),
        )
        app.state.key_verifier = KeyVerifier(sessions, settings.api_key_cache_seconds)
        app.state.read_pool = await reads.create_pool(
            dsn(settings.database_url), settings.db_pool_size, settings.api_db_timeout_seconds
        )
        app.state.reader = reads.Reader(app.state.read_pool, settings.lookup_queries_in_flight)
        # Before the first request (a database that is away delays the start by at most
        # one connect's bound, and the requests answer 503 until it is back).
        await reads.open_connections(app.state.read_pool)
        client = AIOKafkaClient(bootstrap_servers=settings.kafka_bootstrap_servers)
        with contextlib.suppress(Exception):  # readyz reports a broker that is down
            await client.bootstrap()
        app.state.kafka_client = client
        app.state.activity_publisher = ActivityPublisher(settings)
        collector.settle()  # startup done: its objects are never walked again
        try:
            yield
        finally:
            await app.state.activity_publisher.stop()
            await client.close()
            await app.state.read_pool.close()
            await engine.dispose()
            await background_engine.dispose()

    app = FastAPI(
        title="Customer classifier",
        version="0.1.0",
        description="Current classes of customers per dimension, with explanations; class "
        "membership, counts and flows; a change feed and live stream; scheme lifecycle and "
        "manual overrides. Send an API key (`Authorization: Bearer <key>` or `X-API-Key`).",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.clock = system_clock(settings.clock_offset_seconds, settings.clock_frozen_at)
    install_problem_handlers(app)
    document_problems(
        app,
        secured={
            "400": "A value PostgreSQL cannot hold, e.g. a NUL.",
            "503": "The database is unavailable; retry after `Retry-After`.",
        },
    )

    def database_down(request: Request, exc: BaseException) -> Response:
        log.warning("database unavailable on %s: %s", request.url.path, type(exc).__name__)
        problem = DatabaseUnavailable(
            "PostgreSQL did not answer in time or refused the connection",
            headers={"Retry-After": "5"},
        )
        return problem_response(problem.to_problem(request.url.path), problem.headers)

    async def on_database_error(request: Request, exc: Exception) -> Response:
        # PostgreSQL down, restarting, hung, refusing our login, or out of
        # connections: a 503 with Retry-After. Input the schema allows but
        # PostgreSQL refuses (a NUL in text, a number beyond bigint) is the
        # client's mistake: a 400 naming it. Anything else is a bug: a 500.
        if is_unavailable(exc):
            return database_down(request, exc)
        code = sqlstate(exc) or ""
        if code.startswith("22") or isinstance(exc, asyncpg.DataError | sqlalchemy.exc.DataError):
            return problem_response(database_input_problem(exc).to_problem(request.url.path))
        log.error("database error on %s", request.url.path, exc_info=exc)
        problem = Problem(title="Internal server error", status=500, instance=request.url.path)
        return problem_response(problem)

    for database_error in (
        ConnectionError,  # refused/reset, from asyncpg's connect on the read pool
        OSError,
        TimeoutError,  # asyncpg's command timeout on the read pool
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,  # a connection the server closed mid-statement
        asyncpg.DataError,
        sqlalchemy.exc.DBAPIError,  # the same through SQLAlchemy
        sqlalchemy.exc.TimeoutError,  # no pooled connection in time
    ):
        app.add_exception_handler(database_error, on_database_error)
    app.include_router(health_router)
    app.include_router(customers_router)
    app.include_router(classes_router)
    app.include_router(changes_router)
    app.include_router(schemes_router)
    app.include_router(jobs_router)
    app.include_router(identity_router)
    app.include_router(privacy_router)
    app.include_router(audit_router)
    app.include_router(webhooks_router)
    app.include_router(attributes_router)
    app.include_router(console.router)
    console.mount(app)
    # Innermost: single lookups skip the routing but not the middlewares below.
    app.add_middleware(FastLookups)
    app.add_middleware(RequestMetrics, metrics=HTTP)
    app.add_middleware(BodyTimeout, timeout=settings.body_timeout_seconds)
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Last-Event-ID"],
        )
    return app
