"""Start the services as real OS processes, as `make up` does, with a test's own settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from classifier.config import ClassifierSettings

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def service_env(settings: ClassifierSettings, **extra: str) -> dict[str, str]:
    """The environment a service process needs to use these settings."""
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "KAFKA_ACTIVITY_TOPIC": settings.activity_topic,
        "KAFKA_CLASS_CHANGES_TOPIC": settings.class_changes_topic,
        "KAFKA_DLQ_TOPIC": settings.dlq_topic,
        "CLASSIFIER_CONSUMER_GROUP": settings.consumer_group,
        "CLASSIFIER_WORKER_METRICS_PORT": "0",
        **extra,
    }


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
