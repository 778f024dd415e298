"""A lean HTTP/1.1 load generator: keep-alive connections, one request in flight each.

httpx spends more CPU per request than the API under test, and on a 2-core
machine the client's CPU is taken from the server. This client writes raw
requests and reads `Content-Length` bodies on asyncio streams, so nearly all
the measured time is the server's. Only what the benchmarks need: GET and
POST with a body, responses with Content-Length.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes = b""
    content_type: str = "application/json"


class HttpError(RuntimeError):
    pass


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes, body: bytes
) -> tuple[int, bytes]:
    writer.write(head + body)
    status_line_and_headers = await reader.readuntil(b"\r\n\r\n")
    lines = status_line_and_headers.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length) if length else b""


def head(req: Request, host: str, extra: str = "") -> bytes:
    """The request line and headers of `req` (`extra`: more header lines, CRLF-ended)."""
    return (
        f"{req.method} {req.path} HTTP/1.1\r\nHost: {host}\r\n{extra}"
        f"Content-Type: {req.content_type}\r\nContent-Length: {len(req.body)}\r\n\r\n"
    ).encode()


async def run(
    url: str,
    make: Callable[[int], Request],
    count: int,
    concurrency: int,
    headers: dict[str, str] | None = None,
) -> tuple[float, list[float]]:
    """Send `count` requests over `concurrency` connections; (wall seconds, latencies in s)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    latencies: list[float] = []
    numbers = iter(range(count))

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for i in numbers:
                req = make(i)
                started = time.perf_counter()
                status, body = await exchange(
                    reader, writer, head(req, f"{host}:{port}", extra), req.body
                )
                latencies.append(time.perf_counter() - started)
                if status >= 300:
                    raise HttpError(f"{req.method} {req.path}: {status} {body[:200]!r}")
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies
