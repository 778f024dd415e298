"""One customer's lookup without the framework's routing: the hottest request there is.

Other systems look customers up on their own hot paths (a dialler before it
rings), so `GET /v1/customers/{id}` with an API key is answered here, in an
ASGI middleware inside the app's others (CORS, body timeouts, request metrics
still apply): the key checked through the same cached verifier, one indexed
read of the rendered document (customers/reads.py), the bytes sent. Routing,
dependency solving and request objects, which cost more than the read itself,
are skipped. Everything else, and every request this path does not fully
understand (a console session cookie, a query string, an id the route would
refuse, a key without the read scope), goes on to the app unchanged, so its
answers (401, 403, 422) stay the app's own. Errors become the app's answers
through its own exception handlers (404 problem, 503 with Retry-After).
"""

from __future__ import annotations

from typing import cast

from starlette.types import ASGIApp, Receive, Scope, Send

from classifier.auth import KeyVerifier, Principal
from classifier.clock import Clock
from classifier.config import ClassifierSettings
from classifier.customers import service
from eventschemas.http import RouteLabel, handled

PREFIX = "/v1/customers/"
ROUTE = PREFIX + "{customer_id}"
MAX_ID = 128  # the route's Path(max_length=...)
_HEADERS = [(b"content-type", b"application/json")]


class FastLookups:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        customer_id = _customer_id(scope)
        principal = None if customer_id is None else await self._principal(scope)
        if customer_id is None or principal is None:
            await self.app(scope, receive, send)
            return
        app = scope["app"]
        scope["route"] = RouteLabel(ROUTE)  # the request metrics' label
        clock = cast(Clock, app.state.clock)
        try:
            body = await service.get_customer(app.state.reader, customer_id, clock())
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


def _customer_id(scope: Scope) -> str | None:
    """The id of a plain `GET /v1/customers/{id}` the route would take, else None."""
    if scope["type"] != "http" or scope["method"] != "GET" or scope["query_string"]:
        return None
    path: str = scope["path"]
    if not path.startswith(PREFIX):
        return None
    customer_id = path[len(PREFIX) :]
    if not customer_id or len(customer_id) > MAX_ID or "/" in customer_id or "\x00" in customer_id:
        return None
    return customer_id
