"""The benchmark's CPU accounting (bench/cpu.py), on this process's real /proc entries."""

from __future__ import annotations

import time

import pytest

from bench.cpu import CpuMeter, per_event, this_process


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_a_meter_counts_the_cpu_a_component_used_and_leaves_out_absent_ones() -> None:
    meter = CpuMeter({"me": this_process, "remote broker": lambda: []})
    meter.start()
    _burn(0.3)
    used = meter.stop()
    assert set(used) == {"me"}  # nothing of the broker runs here: not reported as 0
    assert 0.2 <= used["me"] <= 2.0


def test_a_process_that_ends_counts_what_it_used_until_then() -> None:
    meter = CpuMeter({"gone": lambda: ["999999999"], "me": this_process})
    meter.start()  # no such process: it contributes nothing, and reading does not fail
    assert meter.stop()["gone"] == 0


def test_per_event_gives_milliseconds_per_event_and_the_cores_a_rate_needs() -> None:
    figures = per_event({"worker": 3.0, "ingest": 1.5}, events=1000, rate=1000)
    assert figures["cpu_ms_per_event"] == {"worker": 3.0, "ingest": 1.5}
    assert figures["cpu_ms_per_event_total"] == 4.5
    # 4.5 ms of CPU per event at 1,000 events/s: 4.5 cores busy.
    assert figures["cores_needed_at_target"] == pytest.approx(4.5)
