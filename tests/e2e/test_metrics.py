"""Each process serves its own metrics, and promtool finds nothing wrong with any of them.

The three services run as separate OS processes, as `make up` starts them.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from classifier.config import ClassifierSettings
from tests.processes import (
    api_command,
    free_port,
    service_env,
    start,
    stop,
    wait_ready,
    worker_command,
)
from tests.thirdparty.clients import promtool

pytestmark = pytest.mark.e2e


@pytest.fixture
def services(
    classifier_settings: ClassifierSettings, sessions: object, tmp_path: Path
) -> Iterator[dict[str, str]]:
    ports = {"ingest": free_port(), "api": free_port(), "worker": free_port()}
    env = service_env(classifier_settings, CLASSIFIER_WORKER_METRICS_PORT=str(ports["worker"]))
    commands = {
        "ingest": api_command("ingest.app:create_app", ports["ingest"]),
        "api": api_command("classifier.app:create_app", ports["api"]),
        "worker": worker_command(),
    }
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, cmd in commands.items():
            procs[name] = start(cmd, env, tmp_path / f"{name}.log")
        wait_ready(urls["ingest"] + "/readyz", procs["ingest"], tmp_path / "ingest.log")
        wait_ready(urls["api"] + "/readyz", procs["api"], tmp_path / "api.log")
        wait_ready(urls["worker"] + "/metrics", procs["worker"], tmp_path / "worker.log")
        yield urls
    finally:
        for proc in procs.values():
            stop(proc)


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the series `name` with (at least) these labels, if exported."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def families(text: str) -> set[str]:
    """Family names from the TYPE lines, without the client's `_created` companions."""
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    return {n for n in names if not n.endswith("_created")}


def promtool_check(checker: Path, text: str) -> tuple[int, str]:
    checked = subprocess.run(
        [str(checker), "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    return checked.returncode, checked.stdout + checked.stderr


@pytest.mark.timeout(1200)  # the first run may build promtool from the Go module
async def test_each_process_exports_its_own_families_and_promtool_accepts_them(
    services: dict[str, str],
    classifier_settings: ClassifierSettings,
    intake_headers: dict[str, str],
) -> None:
    checker = await asyncio.to_thread(promtool)
    placed_at = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    order = {
        "order_id": "M-1",
        "customer_id": "metrics-cust",
        "amount": "10.00",
        "currency": "USD",
        "placed_at": placed_at,
    }
    async with httpx.AsyncClient(timeout=10) as client:
        placed = await client.post(
            services["ingest"] + "/v1/orders", json=order, headers=intake_headers
        )
        assert placed.status_code == 202, placed.text
        for _ in range(3):
            assert (await client.get(services["api"] + "/healthz")).status_code == 200
        unauthorised = await client.get(services["api"] + "/v1/customers/metrics-cust")
        assert unauthorised.status_code == 401

        async def worker_applied() -> str:
            text = (await client.get(services["worker"] + "/metrics")).text
            return text if sample(text, "classifier_events_consumed_total") else ""

        deadline = asyncio.get_running_loop().time() + 30
        worker = await worker_applied()
        while not worker and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.2)
            worker = await worker_applied()
        assert worker, "the worker did not apply the order"
        exported = {
            name: (await client.get(url + "/metrics")).text for name, url in services.items()
        }

    for name, text in exported.items():
        assert await asyncio.to_thread(promtool_check, checker, text) == (0, ""), name

    api, ingest, worker = exported["api"], exported["ingest"], exported["worker"]
    assert sample(api, "classifier_http_requests_total", route="/healthz", status="200") == 3
    assert (
        sample(
            api,
            "classifier_http_requests_total",
            method="GET",
            route="/v1/customers/{customer_id}",
            status="401",
        )
        == 1
    )
    assert sample(api, "classifier_http_request_duration_seconds_count", route="/healthz") == 3
    assert "metrics-cust" not in api  # raw paths never become labels
    assert sample(ingest, "ingest_http_requests_total", route="/v1/orders", status="202") == 1
    assert sample(ingest, "ingest_http_request_duration_seconds_count", route="/v1/orders") == 1

    worker_only = {f for f in families(worker) if f.startswith("classifier_")}
    api_only = {f for f in families(api) if f.startswith("classifier_")}
    assert "classifier_events_consumed_total" in worker_only
    assert worker_only.isdisjoint(api_only)
    assert api_only == {
        "classifier_http_requests_total",
        "classifier_http_request_duration_seconds",
    }
    assert not {f for f in families(ingest) if f.startswith("classifier_")}
    topic = classifier_settings.activity_topic
    partitions = [
        line for line in worker.splitlines() if line.startswith("classifier_consumer_lag_records{")
    ]
    assert partitions, worker
    assert all(f'topic="{topic}"' in line and 'partition="' in line for line in partitions)
    assert sample(worker, "classifier_consumer_lag_seconds", topic=topic) is not None
