"""Slow clients cannot hold the APIs: header and body read timeouts on a real uvicorn.

Ingest runs as `make up` runs it (uvicorn with the guarded protocol, a keep-alive
timeout and a concurrency limit), with a header timeout of 2 s for the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from classifier.config import ClassifierSettings
from tests.processes import api_command, free_port, service_env, start, stop, wait_ready

pytestmark = pytest.mark.integration

HEADER_TIMEOUT = 2.0
TRICKLERS = 1000


async def trickle(port: int, closed_after: list[float], started: float) -> None:
    """Open a connection and send one header byte every 0.5 s until the server hangs up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
    try:
        for byte in request:
            writer.write(bytes([byte]))
            try:
                await writer.drain()
                # The server answers 408 and closes: the read returns (data or EOF) then.
                await asyncio.wait_for(reader.read(1024), timeout=0.5)
                break
            except TimeoutError:
                continue
            except (ConnectionError, OSError):
                break
    finally:
        closed_after.append(time.monotonic() - started)
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


@pytest.fixture
def ingest_process(
    classifier_settings: ClassifierSettings, tmp_path: Path
) -> Iterator[tuple[int, Path]]:
    port = free_port()
    log = tmp_path / "ingest.log"
    env = service_env(
        classifier_settings,
        HTTP_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
        INGEST_BODY_TIMEOUT_SECONDS="1",
    )
    proc = start(api_command("ingest.app:create_app", port), env, log)
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", proc, log)
        yield port, log
    finally:
        stop(proc)


async def test_trickling_connections_are_closed_while_others_are_served(
    ingest_process: tuple[int, Path],
) -> None:
    port, _ = ingest_process
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2 * TRICKLERS + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * TRICKLERS), hard))
    closed_after: list[float] = []
    started = time.monotonic()
    tricklers = [
        asyncio.create_task(trickle(port, closed_after, started)) for _ in range(TRICKLERS)
    ]
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        await asyncio.sleep(0.5)  # all connections are open and trickling
        while time.monotonic() - started < HEADER_TIMEOUT + 1:
            before = time.monotonic()
            answer = await client.get("/healthz")
            latencies.append(time.monotonic() - before)
            assert answer.status_code == 200
            await asyncio.sleep(0.1)
    await asyncio.wait_for(asyncio.gather(*tricklers), timeout=HEADER_TIMEOUT + 10)

    assert len(closed_after) == TRICKLERS
    # Each was closed by the server soon after the header timeout, none before it.
    assert min(closed_after) >= HEADER_TIMEOUT - 0.1
    assert max(closed_after) < HEADER_TIMEOUT + 3
    # Meanwhile normal requests kept answering promptly.
    assert len(latencies) >= 10
    assert max(latencies) < 0.1, sorted(latencies)[-5:]


async def test_a_slow_request_gets_408_and_a_slow_body_too(
    ingest_process: tuple[int, Path],
) -> None:
    port, _ = ingest_process
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /v1/orders HTTP/1.1\r\nHost: x\r\n")
    answer = await asyncio.wait_for(reader.read(), timeout=HEADER_TIMEOUT + 3)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")

    # Headers complete, the body stalls: the app answers 408 after the body timeout (1 s).
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/orders HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
        b"content-length: 100\r\n\r\n{"
    )
    started = time.monotonic()
    answer = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"request-timeout" in answer
    assert 0.9 <= time.monotonic() - started < 5
