"""ASGI middleware of the ingest service: request size limits and rejects by reason."""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eventschemas.http import problem_reason
from eventschemas.problems import PROBLEM_CONTENT_TYPE, BodyTooLarge
from ingest.metrics import REJECTS


class BodyLimit:
    """Refuse bodies over a limit with 413, by Content-Length or while streaming.

    The limit is per path prefix (CSV imports may be large; JSON endpoints are not).
    A body that grows past the limit mid-stream aborts the request: whatever the
    endpoint would have answered is replaced by the 413, and nothing is published
    because publishing happens only after the whole body was read.
    """

    def __init__(self, app: ASGIApp, default_limit: int, limits: dict[str, int]) -> None:
        self.app = app
        self.default_limit = default_limit
        self.limits = limits

    def _limit(self, path: str) -> int:
        for prefix, limit in self.limits.items():
            if path.startswith(prefix):
                return limit
        return self.default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, send, limit)
            return
        received = 0
        exceeded = False
        answered = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge(f"the body exceeds {limit} bytes")
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal answered
            if exceeded:
                if not answered:
                    answered = True
                    await self._refuse(scope, send, limit)
                return
            await send(message)

        await self.app(scope, limited_receive, guarded_send)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, limit: int) -> None:
        problem = BodyTooLarge(f"the body exceeds {limit} bytes").to_problem(scope["path"])
        body = problem.model_dump_json(exclude_none=True).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class RejectMetrics:
    """Count refused requests by reason: the type of the problem-details body the client got.

    Requests themselves (counts and latency by route and status) are counted by
    eventschemas.metrics.RequestMetrics, as in the classifier API.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0
        problem_body: bytearray | None = None

        async def counting_send(message: Message) -> None:
            nonlocal status, problem_body
            if message["type"] == "http.response.start":
                status = message["status"]
                content_type = dict(message.get("headers", [])).get(b"content-type", b"")
                if status >= 400 and content_type.startswith(PROBLEM_CONTENT_TYPE.encode()):
                    problem_body = bytearray()
            elif message["type"] == "http.response.body" and problem_body is not None:
                problem_body += message.get("body", b"")
                if not message.get("more_body", False):
                    REJECTS.labels(reason=_reason(bytes(problem_body), status)).inc()
                    problem_body = None
            await send(message)

        await self.app(scope, receive, counting_send)


def _reason(body: bytes, status: int) -> str:
    try:
        problem_type = orjson.loads(body).get("type", "")
    except (orjson.JSONDecodeError, AttributeError):
        problem_type = ""
    return problem_reason(str(problem_type), status)
