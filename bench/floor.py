"""The HTTP floor: trivial endpoints on the same server stack as the two APIs.

`uvicorn bench.floor:create_app --factory` with the options and process count
the APIs run with. Same framework (FastAPI on uvicorn with the guarded
httptools protocol), same auth (an API key checked through ingest's KeyStore:
the in-memory cache over the real `api_keys` table), same JSON library
(orjson). Each endpoint reads what the real one reads (the body, the path)
and answers a constant: what a request costs before the service does any
work. The benchmarks print every HTTP figure also as a ratio to it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, cast

import orjson
from fastapi import Depends, FastAPI, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ingest.config import IngestSettings
from ingest.keys import KeyStore, open_pool

_bearer = HTTPBearer(auto_error=False)


async def authorised(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    store = cast(KeyStore, request.app.state.key_store)
    if credentials is None or await store.verify(credentials.credentials) is None:
        raise PermissionError("unknown key")  # the benchmark sends valid keys only


Authorised = Depends(authorised)


def _json(content: object, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def create_app() -> FastAPI:
    """The floor app; DATABASE_URL names the database holding the benchmark's keys."""
    settings = IngestSettings()
    assert settings.database_url, "DATABASE_URL: the database holding the keys"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await open_pool(settings.database_url or "", size=2, call_timeout=5)
        app.state.key_store = KeyStore(
            pool, ttl=settings.api_key_cache_seconds, timeout=5, retry_after=1
        )
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/readyz")
    async def readyz() -> Response:
        return _json({"status": "ready"})

    @app.post("/v1/orders", dependencies=[Authorised])
    async def one_event(request: Request) -> Response:
        await request.body()
        return _json({"accepted": 1}, 202)

    @app.post("/v1/orders:batch", dependencies=[Authorised])
    async def many_events(request: Request) -> Response:
        await request.body()
        return _json({"accepted": 0}, 202)

    @app.get("/v1/customers/{customer_id}", dependencies=[Authorised])
    async def one_customer(customer_id: str) -> Response:
        return _json({"id": customer_id})

    @app.post("/v1/customers:lookup", dependencies=[Authorised])
    async def many_customers(request: Request) -> Response:
        await request.body()
        return _json({"customers": []})

    return app
