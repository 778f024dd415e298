"""Start the services as real OS processes, as `make up` does, with a test's own settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.infra import ROOT, service_env

__all__ = ["BIN", "ROOT", "api_command", "service_env", "start", "stop", "worker_command"]

BIN = Path(sys.executable).parent


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def worker_command() -> list[str]:
    return [sys.executable, "-m", "classifier.worker"]


def api_command(app: str, port: int) -> list[str]:
    return [str(BIN / "uvicorn"), app, "--factory", "--port", str(port)]


def stop(proc: subprocess.Popen[bytes], within: float = 30) -> int:
    """SIGTERM, then SIGKILL if it has not exited in time: no process outlives its test."""
    proc.terminate()
    try:
        return proc.wait(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return -9
