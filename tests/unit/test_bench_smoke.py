"""The benchmarks run at their smallest scale, so they cannot rot."""

from __future__ import annotations

from bench.engine import run


def test_engine_benchmark_reports_its_figures() -> None:
    results = run(customers=50, rounds=1, seed=3)

    assert results["customers"] == 50
    assert results["dimensions"] == 9
    for key in ("full_evals_per_s", "warm_evals_per_s", "floor_per_s"):
        assert results[key] > 0
    assert 0 < results["full_vs_floor"] < 1
