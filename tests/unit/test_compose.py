"""docker-compose.yml cannot run here (no Docker engine); check it against the code instead."""

from __future__ import annotations

import importlib
import re
import secrets
import shlex
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


# The defaults in the code, not this shell's overrides (a test run may set INGEST_PORT...).
INGEST_PORT = IngestSettings.model_fields["port"].default
API_PORT = ClassifierSettings.model_fields["port"].default
WORKER_METRICS_PORT = ClassifierSettings.model_fields["worker_metrics_port"].default
DISPATCHER_METRICS_PORT = ClassifierSettings.model_fields["webhook_metrics_port"].default


def env_of(service: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in service["environment"].items()}


MONITORING = {"prometheus", "grafana"}
APP_SERVICES = (
    "migrate",
    "ingest",
    "classifier-api",
    "classifier-worker",
    "classifier-dispatcher",
)


def test_services_are_the_designed_topology(compose: dict[str, Any]) -> None:
    default = {n for n, s in compose["services"].items() if "profiles" not in s}
    assert default == {
        "postgres",
        "kafka",
        "migrate",
        "ingest",
        "classifier-api",
        "classifier-worker",
        "classifier-dispatcher",
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


def test_every_long_running_service_is_restarted(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if name == "migrate":  # one-shot: the services wait for it to complete
            assert "restart" not in service
        else:
            assert service.get("restart") == "unless-stopped", name


def test_app_services_run_the_one_image(compose: dict[str, Any]) -> None:
    images = {compose["services"][name]["image"] for name in APP_SERVICES}
    builds = {str(compose["services"][name]["build"]) for name in APP_SERVICES}
    assert len(images) == 1
    assert len(builds) == 1
    assert compose["services"]["migrate"]["build"]["dockerfile"] == "deploy/docker/Dockerfile"


def test_monitoring_is_opt_in_behind_a_profile(compose: dict[str, Any]) -> None:
    profiled = {n: s["profiles"] for n, s in compose["services"].items() if "profiles" in s}
    assert profiled == {
        **{name: ["monitoring"] for name in MONITORING},
        "fxiaoke-sync": ["fxiaoke"],  # needs a tenant's credentials
    }


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """container path -> host path, for the bind mounts of the repository's files."""
    out = {}
    for volume in service["volumes"]:
        host, container = volume.split(":")[:2]
        if host.startswith("./"):
            out[container] = ROOT / host
    return out


def test_prometheus_scrapes_every_process_and_loads_the_chart_alerts(
    compose: dict[str, Any],
) -> None:
    files = mounts(compose["services"]["prometheus"])
    config = yaml.safe_load(files["/etc/prometheus/prometheus.yml"].read_text())
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"]
        if "static_configs" in job
        else [f"{name}:{sd['port']}" for sd in job["dns_sd_configs"] for name in sd["names"]]
        for job in config["scrape_configs"]
    }
    assert targets == {
        "ingest": [f"ingest:{INGEST_PORT}"],
        "classifier-api": [f"classifier-api:{API_PORT}"],
        # Every worker replica, found by the service name's A records.
        "classifier-worker": [f"classifier-worker:{WORKER_METRICS_PORT}"],
        "classifier-dispatcher": [f"classifier-dispatcher:{DISPATCHER_METRICS_PORT}"],
    }
    (rules,) = config["rule_files"]
    alerts = files[rules]
    assert alerts == ROOT / "deploy/helm/customer-classifier/files/alerts.yml"
    assert yaml.safe_load(alerts.read_text())["groups"]


def test_grafana_provisions_the_chart_dashboard_on_that_prometheus(
    compose: dict[str, Any],
) -> None:
    files = mounts(compose["services"]["grafana"])
    provisioning = files["/etc/grafana/provisioning"]
    (source,) = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((provisioning / "dashboards/customer-classifier.yml").read_text())[
        "providers"
    ]
    dashboards = files[provider["options"]["path"]]
    assert (dashboards / "customer-classifier.json").is_file()


def test_published_ports_match_the_application_defaults(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["ingest"]["ports"] == [f"127.0.0.1:{INGEST_PORT}:8001"]
    assert option(uvicorn_argv(services["ingest"]), "--port") == str(INGEST_PORT)
    assert services["classifier-api"]["ports"] == [f"127.0.0.1:{API_PORT}:8002"]
    assert option(uvicorn_argv(services["classifier-api"]), "--port") == str(API_PORT)
    worker_port = WORKER_METRICS_PORT
    # A range: one host port per worker replica.
    (published,) = services["classifier-worker"]["ports"]
    assert re.fullmatch(rf"127\.0\.0\.1:{worker_port}-\d+:{worker_port}", published)


@pytest.mark.parametrize(
    ("name", "variable"),
    [("ingest", "INGEST_WORKERS"), ("classifier-api", "CLASSIFIER_API_WORKERS")],
)
def test_api_processes_follow_the_setting_of_make_up(
    compose: dict[str, Any], name: str, variable: str
) -> None:
    script = compose["services"][name]["command"][2]
    assert script.startswith(f'W=${{{variable}:-0}}; [ "$$W" -ge 1 ] || W=$$(nproc); exec ')
    assert option(uvicorn_argv(compose["services"][name]), "--workers") == "$$W"
    stack = (ROOT / "scripts" / "stack.sh").read_text()
    assert f'{variable}="${{{variable}:-$(nproc)}}"' in stack  # the same default: the cores
    assert f"--workers ${variable}" in stack


def test_worker_replicas_follow_the_processes_setting_of_make_up(compose: dict[str, Any]) -> None:
    worker = compose["services"]["classifier-worker"]
    assert worker["deploy"]["replicas"] == "${CLASSIFIER_WORKER_PROCESSES:-1}"
    stack = (ROOT / "scripts" / "stack.sh").read_text()
    assert 'CLASSIFIER_WORKER_PROCESSES="${CLASSIFIER_WORKER_PROCESSES:-1}"' in stack
    chart = yaml.safe_load((ROOT / "deploy/helm/customer-classifier/values.yaml").read_text())
    assert chart["worker"]["replicas"] == 1  # the same default


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def uvicorn_argv(service: dict[str, Any]) -> list[str]:
    """The uvicorn command line an API service execs (its shell picks the process count)."""
    shell, flag, script = service["command"]
    assert (shell, flag) == ("sh", "-c")
    return shlex.split(script.split("exec ", 1)[1])


@pytest.mark.parametrize("name", ["ingest", "classifier-api"])
def test_apis_log_json_through_a_config_the_image_holds(compose: dict[str, Any], name: str) -> None:
    command = uvicorn_argv(compose["services"][name])
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


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}` and `${NAME:?error}` (an unset NAME: KeyError)."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.groups()
        if variables.get(name):
            return variables[name]
        if op == "?":
            raise KeyError(f"{name}: {arg}")
        return arg or ""

    return re.sub(r"\$\{(\w+)(?::([-?])([^}]*))?\}", one, value)


@pytest.mark.parametrize("name", [*APP_SERVICES, "fxiaoke-sync"])
def test_identity_key_is_one_required_secret_of_every_app_service(
    compose: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = env_of(compose["services"][name])
    # Ingest and classifier read the same variable; compose refuses to start without it.
    assert env["INGEST_IDENTITY_KEY"] == env["CLASSIFIER_IDENTITY_KEY"]
    with pytest.raises(KeyError, match="IDENTITY_KEY"):
        interpolate(env["INGEST_IDENTITY_KEY"], {})
    key = secrets.token_hex(32)  # made up here: the file holds no key
    monkeypatch.setenv(
        "INGEST_IDENTITY_KEY", interpolate(env["INGEST_IDENTITY_KEY"], {"IDENTITY_KEY": key})
    )
    assert IngestSettings().identity_key_bytes() == key.encode()
    assert interpolate(env["CLASSIFIER_IDENTITY_KEY"], {"IDENTITY_KEY": key}) == key


def test_database_credentials_match_the_postgres_service(compose: dict[str, Any]) -> None:
    pg = compose["services"]["postgres"]["environment"]
    url = compose["services"]["ingest"]["environment"]["DATABASE_URL"]
    assert f"//{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@" in url
    assert url.endswith(f"/{pg['POSTGRES_DB']}")


def test_commands_name_real_entry_points(compose: dict[str, Any]) -> None:
    for name in ("ingest", "classifier-api"):
        target = uvicorn_argv(compose["services"][name])[1]
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
