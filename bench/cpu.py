"""Where the CPU of a benchmark phase goes: seconds of CPU per component.

Reads /proc (Linux): a component is a set of processes found when the phase
starts (a process and its children, PostgreSQL's server processes, the Kafka
broker, this benchmark's own process). A component not running on this
machine (a remote broker or database) is left out.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path


def _cpu_seconds(pid: str) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pgrep(*args: str) -> list[str]:
    found = subprocess.run(["pgrep", *args], capture_output=True, text=True, check=False)
    return found.stdout.split()


def family(pid: int) -> Callable[[], list[str]]:
    """A process and its children (uvicorn's workers), looked up when read."""
    return lambda: [str(pid), *_pgrep("-P", str(pid))]


def postgres() -> list[str]:
    """The local PostgreSQL server's processes (backends included)."""
    return _pgrep("-u", "postgres")


def kafka() -> list[str]:
    return _pgrep("-f", "kafka.Kafka")


def this_process() -> list[str]:
    return [str(os.getpid())]


class CpuMeter:
    """CPU seconds per component between `start()` and `stop()`.

    Processes are looked up at start (those that end meanwhile count what
    they used up to their last reading)."""

    def __init__(self, components: Mapping[str, Callable[[], list[str]]]) -> None:
        self._components = components
        self._pids: dict[str, list[str]] = {}
        self._start: dict[str, dict[str, float]] = {}

    def _read(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for name, pids in self._pids.items():
            out[name] = {}
            for pid in pids:
                try:
                    out[name][pid] = _cpu_seconds(pid)
                except (OSError, IndexError, ValueError):  # ended meanwhile
                    continue
        return out

    def start(self) -> None:
        self._pids = {name: find() for name, find in self._components.items()}
        self._start = self._read()

    def stop(self) -> dict[str, float]:
        """CPU seconds each component used since `start()` (components with no process
        on this machine are left out)."""
        end = self._read()
        used: dict[str, float] = {}
        for name, pids in self._pids.items():
            if not pids:
                continue
            used[name] = sum(
                end[name].get(pid, self._start[name][pid]) - self._start[name][pid]
                for pid in self._start[name]
            )
        return used


def per_event(used: Mapping[str, float], events: int, rate: int) -> dict[str, object]:
    """CPU milliseconds per event by component, their total, and the cores that total
    needs at `rate` events/s (against the machine's)."""
    ms = {name: round(1000 * seconds / max(events, 1), 3) for name, seconds in used.items()}
    total = sum(ms.values())
    return {
        "cpu_ms_per_event": ms,
        "cpu_ms_per_event_total": round(total, 2),
        "cores_needed_at_target": round(total * rate / 1000, 2),
        "cores": os.cpu_count(),
    }
