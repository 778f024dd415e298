"""The worker benchmark runs end to end at its smallest scale, so it cannot rot."""

from __future__ import annotations

import pytest

from bench.worker import run
from classifier.config import ClassifierSettings

pytestmark = pytest.mark.integration


async def test_worker_benchmark_reports_drain_floor_and_freshness(
    classifier_settings: ClassifierSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", classifier_settings.database_url)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", classifier_settings.kafka_bootstrap_servers)

    results = await run(events=300, seed=1, rate=20, seconds=1)

    assert results["worker"]["events"] == results["floor"]["events"] > 0
    assert results["worker"]["events_per_s"] > 0
    assert results["worker"]["peak_rss_mb"] > 0
    assert results["worker_vs_floor"] > 0
    assert results["freshness"]["changes_seen"] == results["freshness"]["sent"] == 20
    assert 0 < results["freshness"]["p50_ms"] <= results["freshness"]["p99_ms"]
