"""`make bench` runs end to end at its smallest scale, so it cannot rot.

Figures at this scale mean nothing; what is checked is that every scenario
ran on real processes and reported what the README and the JSON promise.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.suite import run, table
from classifier.config import ClassifierSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


async def test_every_benchmark_scenario_reports_its_figures(
    classifier_settings: ClassifierSettings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", classifier_settings.database_url)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", classifier_settings.kafka_bootstrap_servers)

    r = await run("smoke", {}, seed=1, log_dir=tmp_path)

    assert r["cores"]
    assert r["parameters"]["worker_events"] == 400
    worker = r["worker"]
    assert worker["events"] == 400  # every preloaded event drained, duplicates included
    assert worker["events_per_s"] > 0
    assert worker["floor_events_per_s"] > 0
    assert worker["vs_floor"] == round(worker["events_per_s"] / worker["floor_events_per_s"], 3)
    assert worker["peak_rss_mb"] > 0
    two = worker["processes_2"]
    assert (two["processes"], two["events"]) == (2, 400)  # the same events, two processes
    assert two["vs_floor"] == round(two["events_per_s"] / worker["floor_events_per_s"], 3)
    assert r["idle"]["seconds"] == 5  # the smoke scale's short measure
    assert 0 <= r["idle"]["worker_cpu_percent"] < 100
    assert isinstance(r["idle"]["settled"], bool)
    lookups = r["lookups"]
    assert lookups["customers_in_db"] > 0
    assert lookups["single_rps"] > 0
    assert 0 < lookups["single_p50_ms"] <= lookups["single_p99_ms"]
    assert 0 < lookups["bulk_p50_ms"] <= lookups["bulk_p99_ms"]
    # The activation re-evaluated the loaded customers plus the copies made up to 300.
    assert r["activation"]["customers"] >= 300
    # Changes: customers with 3 orders in the year (now regular), if the smoke data holds
    # any (cut-offs now come with the first orders, so the first ABC ranking is no longer
    # among them); an activation changes each customer at most once per dimension.
    dimensions = r["engine"]["dimensions"]
    assert 0 <= r["activation"]["changes"] <= r["activation"]["customers"] * dimensions
    assert r["intake"]["single_events_per_s"] > 0
    assert r["intake"]["batch_events_per_s"] > 0
    # Each HTTP figure also as a fraction of the floor measured in the same run.
    intake = r["intake"]
    assert intake["http_floor_rps"] > 0
    ratio = intake["single_events_per_s"] / intake["http_floor_rps"]
    assert intake["vs_http_floor"] == pytest.approx(ratio, abs=0.002)  # floor_rps is rounded
    assert intake["batch_vs_http_floor"] > 0
    assert lookups["vs_http_floor"] > 0
    assert lookups["p99_vs_http_floor"] > 0
    assert lookups["bulk_vs_http_floor"] > 0
    assert "x HTTP floor" in table(r)
    fresh = r["freshness"]
    assert fresh["accepted"] == fresh["changes_seen"] == 40  # 20/s for 2 s, each one seen
    assert 0 < fresh["p50_ms"] <= fresh["p95_ms"] <= fresh["p99_ms"]
    # Where the CPU went meanwhile: the worker and ingest processes it started did work.
    cpu = fresh["cpu_ms_per_event"]
    assert cpu["worker"] > 0
    assert cpu["ingest"] > 0
    assert cpu["load_generator"] > 0
    assert fresh["cpu_ms_per_event_total"] == pytest.approx(sum(cpu.values()), abs=0.02)
    assert fresh["cores_needed_at_target"] == pytest.approx(
        fresh["cpu_ms_per_event_total"] * fresh["target_rate_per_s"] / 1000, abs=0.02
    )
    assert "freshness CPU" in table(r)
    timed = r["time_driven"]
    assert timed["changes_seen"] == timed["customers"] == 5
    assert timed["p50_ms"] >= 0  # never before the instant it was due
    assert r["engine"]["full_evals_per_s"] > 0
    assert r["engine"]["floor_per_s"] > 0
    growth = r["history_growth"]
    assert set(growth["ms_per_event"]) == set(growth["state_bytes"]) == {"10", "30", "100"}
    assert "cost_ratio" in growth
    # The worker's processor (states in memory) and states read back from their rows.
    assert set(growth["cold_ms_per_event"]) == {"10", "30", "100"}
    assert "cold_cost_ratio" in growth
    hooks = r["webhooks"]  # every change delivered, every signature verified
    assert (hooks["delivered"], hooks["rejected"]) == (50, 0)
    assert hooks["deliveries_per_s"] > 0
    assert hooks["floor_posts_per_s"] > 0
    assert 0 < hooks["p50_ms"] <= hooks["p99_ms"]
    assert "webhooks" in table(r)
    assert "worker drain" in table(r)
    assert "history growth" in table(r)
    assert "worker drain x2" in table(r)
    assert "idle worker" in table(r)
    assert "time-driven lag" in table(r)
    merge = r["merge"]  # every merge of the run seen through the lookups
    assert merge["merges"] == 3
    assert 0 < merge["p50_ms"] <= merge["p99_ms"]
    assert merge["large_ms"] > 0
    erasure = r["erasure"]  # every erasure's receipt seen completed
    assert (erasure["erasures"], erasure["facts_each"]) == (2, 20)
    assert 0 < erasure["p50_ms"] <= erasure["p99_ms"]
    assert "merge large" in table(r)
    assert "erasure" in table(r)
