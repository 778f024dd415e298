"""docker-compose.yml cannot run here (no Docker engine); check it against the code instead."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from classifier.config import ClassifierSettings
from ingest.config import IngestSettings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def env_of(service: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in service["environment"].items()}


def test_services_are_the_designed_topology(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "postgres",
        "kafka",
        "migrate",
        "ingest",
        "classifier-api",
        "classifier-worker",
        "fxiaoke-sync",
    }
    # The Fxiaoke sync needs the tenant's credentials: it starts only with its profile.
    assert compose["services"]["fxiaoke-sync"]["profiles"] == ["fxiaoke"]
    assert compose["services"]["postgres"]["image"].startswith("postgres:")
    kafka = compose["services"]["kafka"]
    assert re.fullmatch(r"apache/kafka:3\.9\.\d+", kafka["image"])
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert not any("ZOOKEEPER" in key for key in kafka["environment"])


def test_every_long_running_service_has_a_health_check(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if name != "migrate":
            assert service["healthcheck"]["test"], name


def test_published_ports_match_the_application_defaults(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Defaults, not this shell's ports (make test runs with INGEST_PORT etc. of a checkout).
    for name in ("INGEST_PORT", "CLASSIFIER_PORT", "CLASSIFIER_WORKER_METRICS_PORT"):
        monkeypatch.delenv(name, raising=False)
    services = compose["services"]
    assert services["ingest"]["ports"] == [f"127.0.0.1:{IngestSettings().port}:8001"]
    assert option(services["ingest"]["command"], "--port") == str(IngestSettings().port)
    assert services["classifier-api"]["ports"] == [f"127.0.0.1:{ClassifierSettings().port}:8002"]
    assert option(services["classifier-api"]["command"], "--port") == str(ClassifierSettings().port)
    worker_port = ClassifierSettings().worker_metrics_port
    assert services["classifier-worker"]["ports"] == [f"127.0.0.1:{worker_port}:{worker_port}"]


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


@pytest.mark.parametrize("name", ["ingest", "classifier-api"])
def test_apis_log_json_through_a_config_the_image_holds(compose: dict[str, Any], name: str) -> None:
    command = compose["services"][name]["command"]
    config = option(command, "--log-config")
    assert (ROOT / config).is_file()
    assert f"COPY {config} " in (ROOT / "deploy/docker/Dockerfile").read_text()
    assert "--no-access-log" in command  # URLs may carry a webhook token


@pytest.mark.parametrize(
    "name", ["ingest", "classifier-api", "classifier-worker", "migrate", "fxiaoke-sync"]
)
def test_environment_is_what_the_settings_read(
    compose: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = env_of(compose["services"][name])
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    classifier, ingest = ClassifierSettings(), IngestSettings()

    assert classifier.database_url == env["DATABASE_URL"]
    assert classifier.database_url.startswith("postgresql+asyncpg://classifier:")
    assert "@postgres:5432/classifier" in classifier.database_url
    assert classifier.kafka_bootstrap_servers == ingest.kafka_bootstrap_servers == "kafka:9092"
    assert classifier.activity_topic == ingest.activity_topic == env["KAFKA_ACTIVITY_TOPIC"]
    assert classifier.class_changes_topic == env["KAFKA_CLASS_CHANGES_TOPIC"]
    assert classifier.dlq_topic == env["KAFKA_DLQ_TOPIC"]


def test_database_credentials_match_the_postgres_service(compose: dict[str, Any]) -> None:
    pg = compose["services"]["postgres"]["environment"]
    url = compose["services"]["ingest"]["environment"]["DATABASE_URL"]
    assert f"//{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@" in url
    assert url.endswith(f"/{pg['POSTGRES_DB']}")


def test_commands_name_real_entry_points(compose: dict[str, Any]) -> None:
    for name in ("ingest", "classifier-api"):
        target = compose["services"][name]["command"][1]
        module, attr = target.split(":")
        assert callable(getattr(importlib.import_module(module), attr)), target
    worker = compose["services"]["classifier-worker"]["command"]
    assert worker[:2] == ["python", "-m"]
    assert callable(importlib.import_module(worker[2]).main)
    sync = compose["services"]["fxiaoke-sync"]["command"]
    assert sync == ["python", "-m", "ingest.cli", "fxiaoke", "run"]
    commands = importlib.import_module(sync[2]).fxiaoke.registered_commands
    assert "run" in {c.name for c in commands}


def test_the_fxiaoke_sync_reads_its_settings_and_serves_metrics_where_checked(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    service = compose["services"]["fxiaoke-sync"]
    for key, value in env_of(service).items():
        monkeypatch.setenv(key, value)
    settings = IngestSettings()
    assert settings.database_url == service["environment"]["DATABASE_URL"]
    port = settings.fxiaoke_metrics_port
    assert service["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert f":{port}/metrics" in " ".join(service["healthcheck"]["test"])


def test_dockerfile_exists_for_every_built_service(compose: dict[str, Any]) -> None:
    for service in compose["services"].values():
        if "build" in service:
            assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
