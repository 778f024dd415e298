"""Slow clients cannot hold connections: a header read timeout and a body read timeout.

uvicorn bounds idle keep-alive connections (`--timeout-keep-alive`) and the
number of connections (`--limit-concurrency`), but not the time a client may
take to send its request headers: a client trickling one byte every few
seconds holds a connection for ever (slowloris). Both APIs run with

    uvicorn ... --http eventschemas.serving:GuardedHttpToolsProtocol

which closes a connection whose request headers are not complete within
`HTTP_HEADER_TIMEOUT_SECONDS` (default 10) of its first byte (or of the
connection), answering `408 Request Timeout`. `BodyTimeout` (ASGI) answers
408 when the next chunk of a request body takes longer than the service's
body timeout. A reverse proxy in front should bound the same (see README).
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from eventschemas.problems import PROBLEM_CONTENT_TYPE, ServiceError


class ServingSettings(BaseSettings):
    """Connection limits of the HTTP server (both services)."""

    model_config = SettingsConfigDict(env_prefix="HTTP_", extra="ignore")

    header_timeout_seconds: float = 10.0


_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 30\r\n"
    b"connection: close\r\n"
    b"\r\n"
    b"request headers took too long\n"
)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for a request's headers."""

    header_timeout: float | None = None  # None: from ServingSettings, read once

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if GuardedHttpToolsProtocol.header_timeout is None:
            GuardedHttpToolsProtocol.header_timeout = ServingSettings().header_timeout_seconds
        self._header_deadline: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        if self._header_deadline is None and self.header_timeout:
            self._header_deadline = self.loop.call_later(
                self.header_timeout, self._headers_too_slow
            )

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        # The first bytes of the next request on a kept-alive connection start its clock.
        if self._between_requests():
            self._arm()
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.write(_TIMEOUT_RESPONSE)
            self.transport.close()


class RequestBodyTimeout(ServiceError):
    status = 408
    slug = "request-timeout"
    title = "The request body arrived too slowly"


class BodyTimeout:
    """Answer 408 when the next chunk of a request body takes longer than `timeout`.

    Whatever the endpoint would have answered (a parser turns the aborted read
    into a 400) is replaced by the 408, and the connection is closed.
    """

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_complete = False
        timed_out = False

        async def timed_receive() -> Message:
            nonlocal body_complete, timed_out
            if body_complete:  # waiting for a disconnect (e.g. a live stream): no bound
                return await receive()
            try:
                async with asyncio.timeout(self.timeout):
                    message = await receive()
            except TimeoutError:
                timed_out = True
                raise RequestBodyTimeout(self._detail()) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_complete = True
            return message

        async def guarded_send(message: Message) -> None:
            if not timed_out:
                await send(message)
            elif message["type"] == "http.response.start":
                await self._refuse(scope, send)

        await self.app(scope, timed_receive, guarded_send)

    def _detail(self) -> str:
        return f"no part of the body arrived for {self.timeout:g} s"

    async def _refuse(self, scope: Scope, send: Send) -> None:
        problem = RequestBodyTimeout(self._detail()).to_problem(scope["path"])
        body = problem.model_dump_json(exclude_none=True).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 408,
                "headers": [
                    (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
