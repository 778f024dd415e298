"""One customer's lookup without the framework's routing: the hottest request there is.

Other systems look customers up on their own hot paths (a dialler before it
rings), so `GET /v1/customers/{id}` with an API key is answered here, in an
ASGI middleware inside the app's others (CORS, body timeouts, request metrics
still apply): the key checked through the same cached verifier, one indexed
read of the rendered document (customers/reads.py), the bytes sent. Routing,
dependency solving and request objects, which cost more than the read itself,
are skipped. A customer's history (`/history`, without parameters: every
dimension, the route's default limit) and classes at an instant (`/classes`,
with `as_of` alone, validated by the route's own type) are answered the same
way, from their one statement each. Everything else, and every request this
path does not fully understand (a console session cookie, another query
string, an id the route would refuse, a key without the read scope), goes on
to the app unchanged, so its answers (401, 403, 422) stay the app's own.
Errors become the app's answers through its own exception handlers (404
problem, 503 with Retry-After).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Literal, cast
from urllib.parse import parse_qsl

from pydantic import TypeAdapter, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from classifier.auth import KeyVerifier, Principal
from classifier.clock import Clock
from classifier.config import ClassifierSettings
from classifier.customers import reads, service
from classifier.params import Instant
from eventschemas.http import RouteLabel, handled

PREFIX = "/v1/customers/"
ROUTE = PREFIX + "{customer_id}"
MAX_ID = 128  # the route's Path(max_length=...)
HISTORY_LIMIT = 1000  # the history route's default `limit`
_HEADERS = [(b"content-type", b"application/json")]
# The as-of route's `as_of` parameter, validated as the route validates it.
_AS_OF: TypeAdapter[datetime | Literal["now"]] = TypeAdapter(Instant | Literal["now"])

# A read this path answers: its route (the metrics' label) and how, given the reader,
# the customer id and the clock's now.
Read = tuple[str, Callable[[reads.Reader, str, int], Awaitable[bytes]], str]


class FastLookups:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        read = _read(scope)
        principal = None if read is None else await self._principal(scope)
        if read is None or principal is None:
            await self.app(scope, receive, send)
            return
        route, answer, customer_id = read
        app = scope["app"]
        scope["route"] = RouteLabel(route)  # the request metrics' label
        clock = cast(Clock, app.state.clock)
        try:
            body = await answer(app.state.reader, customer_id, clock())
        except Exception as exc:
            response = await handled(app, scope, exc)
            await response(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*_HEADERS, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _principal(self, scope: Scope) -> Principal | None:
        """The caller if it may read, from its API key; None: the app decides."""
        state = scope["app"].state
        if not cast(ClassifierSettings, state.settings).auth_enabled:
            return Principal("anonymous", "admin")
        key = None
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                key = value.decode("latin-1")
                break
            if name == b"authorization":
                scheme, _, credentials = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and credentials:
                    key = credentials.strip()
        if not key:
            return None
        principal = await cast(KeyVerifier, state.key_verifier).verify(key)
        if principal is None or not (principal.has("read") or principal.has("admin")):
            return None
        return principal


def _read(scope: Scope) -> Read | None:
    """The read of a `GET` this path answers as its route would, else None."""
    if scope["type"] != "http" or scope["method"] != "GET":
        return None
    path: str = scope["path"]
    if not path.startswith(PREFIX):
        return None
    customer_id, slash, tail = path[len(PREFIX) :].partition("/")
    if not customer_id or len(customer_id) > MAX_ID or "\x00" in customer_id:
        return None
    query: bytes = scope["query_string"]
    if not slash:
        return None if query else (ROUTE, service.get_customer, customer_id)
    if tail == "history" and not query:
        return ROUTE + "/history", _history, customer_id
    if tail == "classes":
        at = _as_of(query)
        if at is not None:
            return ROUTE + "/classes", at, customer_id
    return None


async def _history(reader: reads.Reader, customer_id: str, now: int) -> bytes:
    return await service.history(reader, customer_id, None, HISTORY_LIMIT)


def _as_of(query: bytes) -> Callable[[reads.Reader, str, int], Awaitable[bytes]] | None:
    """The as-of read of a query string holding `as_of` alone (or nothing), else None
    (another parameter, a repeated or invalid one: the route answers)."""
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True) if query else []
    if len(pairs) > 1 or (pairs and pairs[0][0] != "as_of"):
        return None
    given: datetime | Literal["now"] | None = None
    if pairs:
        try:
            given = _AS_OF.validate_python(pairs[0][1])
        except ValidationError:
            return None
    at = None if given == "now" else given

    async def classes(reader: reads.Reader, customer_id: str, now: int) -> bytes:
        return await service.classes_as_of(reader, customer_id, at, now=now)

    return classes
