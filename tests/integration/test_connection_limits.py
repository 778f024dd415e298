"""Slow clients cannot hold the APIs: header and body read timeouts on a real uvicorn.

Ingest runs as `make up` runs it (uvicorn with the guarded protocol, a keep-alive
timeout and a concurrency limit), with a header timeout of 2 s for the test.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from classifier.config import ClassifierSettings
from tests.processes import ROOT, api_command, free_port, service_env, start, stop, wait_ready

pytestmark = pytest.mark.integration

HEADER_TIMEOUT = 2.0
TRICKLERS = 1000


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
    # 1,000 connections trickling one header byte every 0.5 s, from another process.
    slow = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.slow_clients", str(port), str(TRICKLERS), "0.5",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert slow.stdout is not None
    try:
        word, opening = (await asyncio.wait_for(slow.stdout.readline(), timeout=30)).split()
        assert word == b"open"
        all_open = time.monotonic()
        latencies: list[float] = []
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            while time.monotonic() - all_open < HEADER_TIMEOUT + 2:
                before = time.monotonic()
                answer = await client.get("/healthz")
                latencies.append(time.monotonic() - before)
                assert answer.status_code == 200
                await asyncio.sleep(0.05)
        out, _ = await asyncio.wait_for(slow.communicate(), timeout=HEADER_TIMEOUT + 10)
    finally:
        if slow.returncode is None:
            slow.kill()
            await slow.wait()

    # Seconds from the first connection attempt until the server closed each one: none
    # before the header timeout, all soon after it (the last opened `opening` s in).
    closed_after = [float(line) for line in out.split()]
    assert len(closed_after) == TRICKLERS
    assert min(closed_after) >= HEADER_TIMEOUT - 0.05
    assert max(closed_after) < float(opening) + HEADER_TIMEOUT + 1
    # Meanwhile normal requests kept answering within 100 ms.
    assert len(latencies) >= 20
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
