"""Start the services as real OS processes, as `make up` does, with a test's own settings."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.http import free_port
from bench.infra import ROOT, service_env

__all__ = [
    "BIN",
    "ROOT",
    "SERVER_OPTIONS",
    "api_command",
    "free_port",
    "service_env",
    "start",
    "stop",
    "wait_ready",
    "worker_command",
]

BIN = Path(sys.executable).parent


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{url} exited early:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready:\n{log.read_text()[-3000:]}")


def worker_command() -> list[str]:
    return [sys.executable, "-m", "classifier.worker"]


# As `make up` runs the APIs: slow clients cannot hold connections (eventschemas.serving).
SERVER_OPTIONS = [
    "--http",
    "eventschemas.serving:GuardedHttpToolsProtocol",
    "--timeout-keep-alive",
    "5",
    "--limit-concurrency",
    "2000",
]


def api_command(app: str, port: int) -> list[str]:
    return [str(BIN / "uvicorn"), app, "--factory", "--port", str(port), *SERVER_OPTIONS]


def stop(proc: subprocess.Popen[bytes], within: float = 30) -> int:
    """SIGTERM, then SIGKILL if it has not exited in time: no process outlives its test."""
    proc.terminate()
    try:
        return proc.wait(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return -9
