"""A real HTTP webhook receiver for tests: uvicorn on 127.0.0.1, one behaviour per path.

Every request is verified with `standardwebhooks.Webhook(secret).verify` as a
receiver would; one that does not verify is answered 400 and kept in `rejected`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from standardwebhooks import Webhook, WebhookVerificationError

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass
class Delivery:
    webhook_id: str
    headers: dict[str, str]
    body: bytes
    payload: Any


@dataclass
class Receiver:
    """Paths: /ok/<name> answers 200; /flaky/<name> answers 500 to the first `fail_times`
    attempts of each webhook-id, then 200; /hang/<name> never answers; /gone/<name> 410."""

    fail_times: int = 3
    secrets: dict[str, list[str]] = field(default_factory=dict)  # path -> secrets to accept
    attempts: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    accepted: dict[str, list[Delivery]] = field(default_factory=lambda: defaultdict(list))
    rejected: list[tuple[str, str]] = field(default_factory=list)
    disconnected: list[str] = field(default_factory=list)  # requests cut off by their sender
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def verify(self, path: str, body: bytes, headers: dict[str, str]) -> Any:
        """The payload, when one of the path's secrets verifies it; raises otherwise."""
        last: Exception = WebhookVerificationError(f"no secret registered for {path}")
        for secret in self.secrets.get(path, []):
            try:
                return Webhook(secret).verify(body, headers)
            except WebhookVerificationError as exc:
                last = exc
        raise last

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                # The sender went away mid-request (a killed dispatcher): the body is cut
                # short, so there is nothing to verify and no one to answer.
                self.disconnected.append(path)
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        webhook_id = headers.get("webhook-id", "")
        self.attempts[path].append(webhook_id)
        try:
            payload = self.verify(path, body, headers)
        except WebhookVerificationError as exc:
            self.rejected.append((path, str(exc)))
            return await _answer(send, 400)
        if path.startswith("/hang/"):
            await asyncio.Event().wait()
        if path.startswith("/gone/"):
            return await _answer(send, 410)
        if path.startswith("/flaky/") and self.attempts[path].count(webhook_id) <= self.fail_times:
            return await _answer(send, 500)
        self.accepted[path].append(Delivery(webhook_id, headers, body, payload))
        await _answer(send, 200)


async def _answer(send: Send, status: int) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b""})


@contextlib.asynccontextmanager
async def serve(receiver: Receiver) -> AsyncIterator[Receiver]:
    """Run the receiver on a free port of 127.0.0.1 until the block ends."""
    config = uvicorn.Config(
        receiver, host="127.0.0.1", port=0, log_level="warning", lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    receiver.port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield receiver
    finally:
        server.should_exit = server.force_exit = True
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
