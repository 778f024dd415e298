"""One order or call per request, without the framework's routing: intake's busiest path.

Shops and diallers send events one by one, so `POST /v1/orders` and
`POST /v1/calls` with a JSON body and a key holding the scope are answered
here, in an ASGI middleware inside the app's others (size limit, body timeout,
request and reject metrics still apply): the key checked through the same
cached store, the body validated by the same input model (pydantic, straight
from JSON), the event built by the same service and accepted through the same
gate (quota, re-send check, suppressions, broker acknowledgement). Routing,
dependency solving and response-model validation, which cost more than the
work itself, are skipped.

Nothing is decided here that the app would decide otherwise: a request this
path does not fully understand (no key or an unknown one, a missing scope, a
query string, another content type, input the model or the service refuses)
goes on to the app with its body replayed, before anything was published, so
its answers (401, 403, 422, ...) stay the app's own. Once the gate is entered,
errors become the app's answers through its own exception handlers (409, 429,
503 with Retry-After).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import orjson
from pydantic import BaseModel, ValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eventschemas.envelope import Envelope
from eventschemas.http import RouteLabel, handled
from eventschemas.problems import ServiceError
from ingest.calls import service as calls
from ingest.calls.schemas import CallIn
from ingest.config import IngestSettings
from ingest.gate import gate_of
from ingest.intake import accept_one
from ingest.keys import IntakeKey, KeyStore
from ingest.orders import service as orders
from ingest.orders.schemas import OrderIn
from ingest.publisher import EventPublisher


@dataclass(frozen=True)
class Endpoint:
    scope: str
    model: type[BaseModel]
    event: Callable[[IngestSettings, Any], Any]  # settings, input -> ActivityEvent


ENDPOINTS = {
    "/v1/orders": Endpoint("orders:write", OrderIn, orders.order_placed),
    "/v1/calls": Endpoint("calls:write", CallIn, calls.call_logged),
}


class FastIntake:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = _endpoint(scope)
        key = None if endpoint is None else await self._key(scope, endpoint)
        if endpoint is None or key is None:
            await self.app(scope, receive, send)
            return
        body = await _body(receive)
        app = scope["app"]
        settings = cast(IngestSettings, app.state.settings)
        try:
            envelope: Envelope = endpoint.event(
                settings, endpoint.model.model_validate_json(body)
            ).to_envelope(settings.source)
        except (ValidationError, ServiceError, ValueError):
            # Refused input: the app answers it (its problem details), nothing sent yet.
            await self.app(scope, _replay(body, receive), send)
            return
        scope["route"] = RouteLabel(scope["path"])  # the request metrics' label
        answer = Response(status_code=202, media_type="application/json")
        gate = gate_of(app.state, key, answer)
        try:
            accepted = await accept_one(gate, cast(EventPublisher, app.state.publisher), envelope)
        except Exception as exc:
            response = await handled(app, scope, exc)
            await response(scope, receive, send)
            return
        answer.body = orjson.dumps(accepted.model_dump())
        answer.headers["content-length"] = str(len(answer.body))
        await answer(scope, receive, send)

    async def _key(self, scope: Scope, endpoint: Endpoint) -> IntakeKey | None:
        """The caller's key if it holds the endpoint's scope; None: the app decides."""
        state = scope["app"].state
        if not cast(IngestSettings, state.settings).auth_enabled:
            return None  # the app's anonymous gate, without quota
        for name, value in scope["headers"]:
            if name == b"authorization":
                kind, _, credentials = value.decode("latin-1").partition(" ")
                if kind.lower() != "bearer" or not credentials.strip():
                    return None
                try:
                    key = await cast(KeyStore, state.key_store).verify(credentials.strip())
                except ServiceError:
                    return None  # the key store is unavailable: the app says so
                if key is None or endpoint.scope not in key.scopes:
                    return None
                return key
        return None


def _endpoint(scope: Scope) -> Endpoint | None:
    if scope["type"] != "http" or scope["method"] != "POST" or scope["query_string"]:
        return None
    endpoint = ENDPOINTS.get(scope["path"])
    if endpoint is None:
        return None
    for name, value in scope["headers"]:
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return endpoint if media == b"application/json" else None
    return None


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away: the app's path sees the same
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` for the app, giving the body already read, then the client's messages."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
