"""Every metric the alerts and the dashboard query is one the services really export.

The four processes run as `make up` starts them (uvicorn twice, the worker
module and the webhook dispatcher, with their metrics ports open); their live /metrics pages are
scraped, and every name in every alert rule and every dashboard panel must be
on one of them. A metric renamed or dropped in the code fails here, not on an
operator's empty graph or a silent alert.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import yaml

from classifier.config import ClassifierSettings
from tests.processes import free_port, service_env, stop, wait_ready
from tests.promql import exported_names, metric_names

pytestmark = pytest.mark.e2e

FILES = Path(__file__).resolve().parents[2] / "deploy/helm/customer-classifier/files"
PROMETHEUS_MADE = {"up"}  # series Prometheus writes about its scrapes, not the services


def alert_queries() -> dict[str, str]:
    rules = yaml.safe_load((FILES / "alerts.yml").read_text())
    return {r["alert"]: r["expr"] for group in rules["groups"] for r in group["rules"]}


def panel_queries() -> dict[str, str]:
    dashboard = orjson.loads((FILES / "dashboards/customer-classifier.json").read_bytes())
    return {
        f"{panel['title']} [{target['refId']}]": target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    }


def test_names_are_read_out_of_promql() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(a_seconds_bucket{job=~"x|y"}[5m]))) > 1e3\n'
        "and sum(max by (partition) (deriv(b_lag[10m]))) / clamp_min(sum(c_total), 1)\n"
        'or up{job="w"} == bool 0 unless on (instance) d'
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b_lag", "c_total", "up", "d"}


@pytest.fixture
def scraped(
    classifier_settings: ClassifierSettings, sessions: object, tmp_path: Path, root: Path
) -> Iterator[set[str]]:
    ports = {"ingest": free_port(), "api": free_port(), "worker": free_port()}
    ports["dispatcher"] = free_port()
    env = service_env(
        classifier_settings,
        CLASSIFIER_WORKER_METRICS_PORT=str(ports["worker"]),
        CLASSIFIER_WEBHOOK_METRICS_PORT=str(ports["dispatcher"]),
    )
    bin_dir = Path(sys.executable).parent
    uvicorn = [str(bin_dir / "uvicorn"), "--factory", "--port"]
    commands = {
        "ingest": [*uvicorn, str(ports["ingest"]), "ingest.app:create_app"],
        "api": [*uvicorn, str(ports["api"]), "classifier.app:create_app"],
        "worker": [sys.executable, "-m", "classifier.worker"],
        "dispatcher": [sys.executable, "-m", "classifier.webhooks.dispatcher"],
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, cmd in commands.items():
            log = tmp_path / f"{name}.log"
            procs[name] = subprocess.Popen(
                cmd, cwd=root, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
            )
        names: set[str] = set()
        for name, port in ports.items():
            url = f"http://127.0.0.1:{port}"
            ready = url + ("/metrics" if name in ("worker", "dispatcher") else "/readyz")
            wait_ready(ready, procs[name], tmp_path / f"{name}.log")
            names |= exported_names(httpx.get(url + "/metrics", timeout=5).text)
        yield names
    finally:
        for proc in procs.values():
            stop(proc)


def test_every_alert_and_panel_queries_metrics_the_services_export(scraped: set[str]) -> None:
    queries = {**{f"alert {k}": v for k, v in alert_queries().items()}, **panel_queries()}
    assert len(queries) >= 20
    missing = {
        where: sorted(metric_names(expr) - scraped - PROMETHEUS_MADE)
        for where, expr in queries.items()
        if metric_names(expr) - scraped - PROMETHEUS_MADE
    }
    assert missing == {}
    used = set().union(*(metric_names(e) for e in queries.values())) - PROMETHEUS_MADE
    # The families the operations depend on are all there (not a vacuous pass).
    assert {
        "classifier_consumer_lag_records",
        "classifier_review_lag_seconds_bucket",
        "classifier_outbox_oldest_age_seconds",
        "ingest_http_requests_total",
    } <= used
