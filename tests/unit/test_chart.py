"""The Helm chart, rendered by helm itself, held to what an SRE checks first.

Renders deploy/helm/customer-classifier with the default values and with every
optional feature on (ci/all-features-values.yaml), then: every container has
probes, limits, non-root, a read-only root filesystem and no capabilities;
every Deployment has a PodDisruptionBudget that selects its pods; commands,
ports and environment are what the code runs and reads; the worker's grace
period covers its SIGTERM handling; KEDA never scales past the partitions.
Also: the dashboard is Grafana's schema (decoded and re-encoded by Grafana's
own typed models without losing a field). The tools come from
scripts/k8s-tools.sh (built once; instant afterwards).
"""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from classifier.changes.relay import OutboxRelay
from classifier.config import ClassifierSettings
from ingest.config import IngestSettings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy/helm/customer-classifier"
Doc = dict[str, Any]


@pytest.fixture(scope="module")
def helm() -> Path:
    """helm v3.22.0 from scripts/k8s-tools.sh (make k8s-check has built it before pytest runs)."""
    out = subprocess.run(
        ["bash", str(ROOT / "scripts/k8s-tools.sh"), "helm"],
        capture_output=True, text=True, check=True, timeout=1800,
    )  # fmt: skip
    return Path(out.stdout.strip().splitlines()[-1]) / "helm"


def render(helm: Path, *values: str, sets: tuple[str, ...] = ()) -> list[Doc]:
    cmd = [str(helm), "template", "customer-classifier", str(CHART), "--kube-version", "1.31.0"]
    for path in values:
        cmd += ["-f", str(CHART / path)]
    for assignment in sets:
        cmd += ["--set", assignment]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="module", params=["defaults", "all-features"])
def rendered(request: pytest.FixtureRequest, helm: Path) -> list[Doc]:
    if request.param == "defaults":
        return render(helm)
    return render(helm, "ci/all-features-values.yaml")


@pytest.fixture(scope="module")
def everything(helm: Path) -> list[Doc]:
    return render(helm, "ci/all-features-values.yaml")


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[Doc], kind: str, component: str) -> Doc:
    (doc,) = [
        d
        for d in of_kind(docs, kind)
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component
    ]
    return doc


def pod_specs(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]


def test_every_container_has_probes_and_limits(rendered: list[Doc]) -> None:
    deployments = of_kind(rendered, "Deployment")
    assert len(deployments) >= 3
    for deployment in deployments:
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            name = f"{deployment['metadata']['name']}/{container['name']}"
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                assert container[probe]["httpGet"]["path"], (name, probe)
            limits, requests = container["resources"]["limits"], container["resources"]["requests"]
            assert {"cpu", "memory"} <= set(limits), name
            assert {"cpu", "memory"} <= set(requests), name
    for where, spec in pod_specs(rendered):
        for container in spec["containers"]:
            assert container["resources"]["limits"]["memory"], where


def test_every_pod_runs_non_root_read_only_without_capabilities(rendered: list[Doc]) -> None:
    specs = list(pod_specs(rendered))
    assert specs
    for where, spec in specs:
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, where
        assert pod["runAsUser"] != 0, where
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", where
        assert spec["automountServiceAccountToken"] is False, where
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in sc["capabilities"], where
            # A read-only root needs a writable /tmp for Python's tempfile.
            assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"]), where


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_every_deployment_has_a_pdb_that_selects_its_pods(rendered: list[Doc]) -> None:
    pdbs = of_kind(rendered, "PodDisruptionBudget")
    for deployment in of_kind(rendered, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        matching = [p for p in pdbs if selects(p["spec"]["selector"]["matchLabels"], labels)]
        assert len(matching) == 1, deployment["metadata"]["name"]
        budget = matching[0]["spec"]
        # A budget that allows no eviction at all would block node drains forever.
        assert budget.get("maxUnavailable", 1) >= 1 or budget.get("minAvailable", 0) >= 1


def test_deployments_spread_over_zones_and_nodes(rendered: list[Doc]) -> None:
    for deployment in of_kind(rendered, "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        keys = {c["topologyKey"] for c in spec["topologySpreadConstraints"]}
        assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
        for constraint in spec["topologySpreadConstraints"]:
            assert selects(
                constraint["labelSelector"]["matchLabels"],
                deployment["spec"]["template"]["metadata"]["labels"],
            )


def container(docs: list[Doc], component: str) -> Doc:
    deployment = one(docs, "Deployment", component)
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


@pytest.mark.parametrize(
    ("component", "settings_port"),
    [
        ("ingest", IngestSettings.model_fields["port"].default),
        ("api", ClassifierSettings.model_fields["port"].default),
    ],
)
def test_apis_run_the_real_app_on_the_probed_port(
    rendered: list[Doc], component: str, settings_port: int
) -> None:
    c = container(rendered, component)
    command = c["command"]
    module, attr = command[1].split(":")
    assert callable(getattr(importlib.import_module(module), attr))
    port = int(option(command, "--port"))
    assert port == settings_port
    assert c["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert (ROOT / option(command, "--log-config")).is_file()
    assert "--no-access-log" in command  # URLs may carry a webhook token
    service = one(rendered, "Service", component)
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    # Endpoints drop the pod during preStop; uvicorn then drains in-flight
    # requests; both end before the kubelet's SIGKILL.
    pod = one(rendered, "Deployment", component)["spec"]["template"]["spec"]
    drain = int(option(command, "--timeout-graceful-shutdown"))
    pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop + drain < pod["terminationGracePeriodSeconds"]


@pytest.mark.parametrize(
    ("sets", "ingest", "api"),
    [
        ((), "1", "1"),  # the default limits: 1 CPU each, so one process per core
        (("ingest.workers=3",), "3", "1"),
        (("api.resources.limits.cpu=2500m",), "1", "3"),
        (("api.resources.limits.cpu=null", "api.resources.requests.cpu=2"), "1", "2"),
    ],
)
def test_api_processes_are_one_per_core_of_the_pod_unless_set(
    helm: Path, sets: tuple[str, ...], ingest: str, api: str
) -> None:
    docs = render(helm, sets=sets)
    assert option(container(docs, "ingest")["command"], "--workers") == ingest
    assert option(container(docs, "api")["command"], "--workers") == api


def test_worker_runs_the_worker_module_and_exposes_metrics_where_probed(
    rendered: list[Doc],
) -> None:
    c = container(rendered, "worker")
    assert c["command"][:2] == ["python", "-m"]
    assert callable(importlib.import_module(c["command"][2]).main)
    env = {e["name"]: e.get("value") for e in c["env"]}
    port = int(env["CLASSIFIER_WORKER_METRICS_PORT"])
    assert env["CLASSIFIER_HOST"] == "0.0.0.0"  # else Prometheus and the kubelet cannot reach it
    assert c["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"]["port"] == "metrics"


def test_dispatcher_runs_the_dispatcher_module_with_its_metrics_probed(
    rendered: list[Doc],
) -> None:
    c = container(rendered, "dispatcher")
    assert c["command"][:2] == ["python", "-m"]
    assert callable(importlib.import_module(c["command"][2]).main)
    env = {e["name"]: e.get("value") for e in c["env"]}
    port = int(env["CLASSIFIER_WEBHOOK_METRICS_PORT"])
    assert env["CLASSIFIER_HOST"] == "0.0.0.0"
    assert c["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
    assert c["readinessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}


def test_fxiaoke_sync_runs_the_sync_command_with_its_metrics_probed(helm: Path) -> None:
    assert not [d for d in render(helm) if "fxiaoke" in d["metadata"]["name"]]  # off by default
    docs = render(helm, "ci/all-features-values.yaml")
    sync = container(docs, "fxiaoke")
    assert sync["command"] == ["python", "-m", "ingest.cli", "fxiaoke", "run"]
    env = {e["name"]: e.get("value") for e in sync["env"]}
    port = sync["ports"][0]["containerPort"]
    assert env["INGEST_FXIAOKE_METRICS_PORT"] == str(port)
    assert sync["readinessProbe"]["httpGet"]["port"] in (port, "metrics")
    assert one(docs, "Deployment", "fxiaoke")["spec"]["replicas"] == 1


def test_worker_grace_period_covers_its_sigterm_handling(rendered: list[Doc]) -> None:
    """SIGTERM: the batch in flight commits (a database outage backs off up to
    db_retry_max_seconds), then the relay drains the outbox (bounded by
    OutboxRelay.drain's `within`). Killed earlier, the work is redone, not lost,
    but every stop would then replay a batch."""
    settings = ClassifierSettings()
    drain = inspect.signature(OutboxRelay.drain).parameters["within"].default
    worker = one(rendered, "Deployment", "worker")
    grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > settings.db_retry_max_seconds + drain + settings.session_timeout_ms / 1000


def test_environment_is_what_the_settings_read(
    rendered: list[Doc], monkeypatch: pytest.MonkeyPatch
) -> None:
    (config,) = of_kind(rendered, "ConfigMap")[:1]
    for key, value in config["data"].items():
        monkeypatch.setenv(key, value)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    classifier, ingest = ClassifierSettings(), IngestSettings()
    assert classifier.kafka_bootstrap_servers == ingest.kafka_bootstrap_servers
    assert classifier.activity_topic == ingest.activity_topic
    assert classifier.activity_topic == values["kafka"]["topics"]["activity"]
    assert classifier.class_changes_topic == values["kafka"]["topics"]["classChanges"]
    assert classifier.dlq_topic == values["kafka"]["topics"]["dlq"]
    assert classifier.consumer_group == values["kafka"]["consumerGroup"]
    assert classifier.activity_partitions == values["kafka"]["partitions"]["activity"]
    # The migration Job creates production topics replicated, not with the local default of 1.
    assert classifier.topic_replication_factor == values["kafka"]["replicationFactor"] == 3


def test_secrets_are_referenced_never_rendered(rendered: list[Doc]) -> None:
    assert of_kind(rendered, "Secret") == []
    for where, spec in pod_specs(rendered):
        for c in spec["containers"]:
            env = {e["name"]: e for e in c["env"]}
            url = env["DATABASE_URL"]
            assert "secretKeyRef" in url.get("valueFrom", {}) or "$(DATABASE_PASSWORD)" in url.get(
                "value", ""
            ), where
            for name in ("INGEST_GENERIC_WEBHOOK_SECRET", "INGEST_HUBSPOT_CLIENT_SECRET"):
                assert "secretKeyRef" in env[name]["valueFrom"], where


def test_every_process_reads_one_required_identity_key(rendered: list[Doc]) -> None:
    """Ingest and classifier digest identities with the same key: one Secret entry, not
    optional (a pod without it must not start and digest with another key)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    expected = {
        "name": values["secrets"]["existingSecret"],
        "key": values["secrets"]["identityKey"],
    }
    specs = list(pod_specs(rendered))
    assert {where.split("/")[0] for where, _ in specs} == {"Deployment", "Job"}
    for where, spec in specs:
        for c in spec["containers"]:
            env = {e["name"]: e for e in c["env"]}
            for name in ("INGEST_IDENTITY_KEY", "CLASSIFIER_IDENTITY_KEY"):
                assert env[name]["valueFrom"] == {"secretKeyRef": expected}, (where, name)


def test_migration_is_a_hook_job_that_upgrades_then_creates_topics(helm: Path) -> None:
    plain = one(render(helm), "Job", "migrate")
    assert plain["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    (c,) = plain["spec"]["template"]["spec"]["containers"]
    assert c["command"][-1] == "alembic upgrade head && python -m classifier.topics"
    # Environment inlined: a pre-install hook runs before the chart's ConfigMap exists.
    assert "envFrom" not in c
    assert {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"} <= {e["name"] for e in c["env"]}
    with_strimzi = one(render(helm, sets=("kafka.strimzi.enabled=true",)), "Job", "migrate")
    (c,) = with_strimzi["spec"]["template"]["spec"]["containers"]
    assert c["command"][-1] == "alembic upgrade head"


def test_keda_scales_workers_on_lag_up_to_the_partition_count(helm: Path) -> None:
    docs = render(helm, "ci/all-features-values.yaml")
    (scaled,) = of_kind(docs, "ScaledObject")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    partitions = values["kafka"]["partitions"]["activity"]
    assert scaled["spec"]["maxReplicaCount"] == partitions
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["topic"] == values["kafka"]["topics"]["activity"]
    assert trigger["metadata"]["consumerGroup"] == values["kafka"]["consumerGroup"]
    worker = one(docs, "Deployment", "worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    assert "replicas" not in worker["spec"]  # KEDA owns it
    # Asking for more workers than partitions gets the partition count.
    capped = render(helm, sets=("worker.keda.enabled=true", "worker.keda.maxReplicas=500"))
    assert of_kind(capped, "ScaledObject")[0]["spec"]["maxReplicaCount"] == partitions


def test_hpas_scale_the_two_apis_on_cpu(rendered: list[Doc]) -> None:
    deployments = {d["metadata"]["name"]: d for d in of_kind(rendered, "Deployment")}
    targets = set()
    for hpa in of_kind(rendered, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]["name"]
        assert "replicas" not in deployments[target]["spec"]
        assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
        targets.add(deployments[target]["metadata"]["labels"]["app.kubernetes.io/component"])
    assert targets == {"ingest", "api"}


def test_network_policies_let_only_what_must_talk_talk(everything: list[Doc]) -> None:
    policies = {p["metadata"]["name"].removeprefix("customer-classifier-"): p["spec"] for p in
                of_kind(everything, "NetworkPolicy")}  # fmt: skip
    deny = policies["default-deny"]
    assert deny["policyTypes"] == ["Ingress", "Egress"]
    for where, _ in pod_specs(everything):
        kind, name = where.split("/")
        (owner,) = [d for d in of_kind(everything, kind) if d["metadata"]["name"] == name]
        pod_labels = owner["spec"]["template"]["metadata"]["labels"]
        assert selects(deny["podSelector"]["matchLabels"], pod_labels), where
        own = [p for p in policies.values() if selects(p["podSelector"]["matchLabels"], pod_labels)]
        assert len(own) == 2, where  # the default deny and the pod's own allowances
    assert "ingress" not in deny
    assert "egress" not in deny
    # The worker takes no traffic but Prometheus' scrape of its metrics port.
    (rule,) = policies["worker"]["ingress"]
    assert rule["ports"] == [{"port": 9102, "protocol": "TCP"}]
    assert rule["from"]

    # Every process reaches Kafka and PostgreSQL (ingest: intake keys and re-sends).
    def egress_ports(name: str) -> set[int]:
        return {p["port"] for rule in policies[name]["egress"] for p in rule["ports"]}

    assert egress_ports("ingest") == {53, 9093, 5432}
    assert egress_ports("api") == {53, 9093, 5432}
    assert egress_ports("worker") == {53, 9093, 5432}
    # The Fxiaoke sync also calls Fxiaoke's OpenAPI over HTTPS.
    assert egress_ports("fxiaoke") == {53, 9093, 5432, 443}
    # The webhook dispatcher delivers to the subscribers' HTTPS endpoints.
    assert egress_ports("dispatcher") == {53, 9093, 5432, 443}
    assert "ingress" not in policies["migrate"]


def test_optional_resources_appear_only_when_switched_on(helm: Path) -> None:
    optional = {"ScaledObject", "KafkaTopic", "Cluster", "ServiceMonitor", "PrometheusRule"}
    default_kinds = {d["kind"] for d in render(helm)}
    all_kinds = {d["kind"] for d in render(helm, "ci/all-features-values.yaml")}
    assert not optional & default_kinds
    assert optional <= all_kinds


def test_strimzi_topics_match_the_configured_topics(everything: list[Doc]) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())["kafka"]
    topics = {t["spec"]["topicName"]: t["spec"] for t in of_kind(everything, "KafkaTopic")}
    assert set(topics) == set(values["topics"].values())
    activity = topics[values["topics"]["activity"]]
    assert activity["partitions"] == values["partitions"]["activity"]
    assert activity["replicas"] == values["replicationFactor"]
    assert activity["config"]["min.insync.replicas"] == "2"
    assert int(activity["config"]["retention.ms"]) == values["strimzi"]["retention"]["activityMs"]


def test_prometheus_rule_carries_the_alert_file(everything: list[Doc]) -> None:
    (rule,) = of_kind(everything, "PrometheusRule")
    alerts = yaml.safe_load((CHART / "files/alerts.yml").read_text())
    assert rule["spec"] == alerts
    monitors = of_kind(everything, "ServiceMonitor")
    assert {m["spec"]["endpoints"][0]["relabelings"][0]["replacement"] for m in monitors} >= {
        "ingest",
        "classifier-api",
        "classifier-worker",
    }


def lost(written: Any, decoded: Any, path: str = "") -> list[str]:
    """Paths of `written` that `decoded` does not hold with the same value."""
    if isinstance(written, dict):
        if not isinstance(decoded, dict):
            return [path]
        return [
            p
            for key, value in written.items()
            for p in (
                [f"{path}/{key}"]
                if key not in decoded
                else lost(value, decoded[key], f"{path}/{key}")
            )
        ]
    if isinstance(written, list):
        if not isinstance(decoded, list) or len(written) != len(decoded):
            return [path]
        return [
            p
            for i, (a, b) in enumerate(zip(written, decoded, strict=True))
            for p in lost(a, b, f"{path}[{i}]")
        ]
    return [] if written == decoded else [path]


def test_lost_finds_dropped_and_changed_fields() -> None:
    assert lost({"a": 1, "b": [{"c": 2}]}, {"a": 1, "b": [{"c": 2, "d": 3}], "e": 4}) == []
    assert lost({"a": 1, "typo": 2}, {"a": 1}) == ["/typo"]
    assert lost({"b": [{"c": 2}]}, {"b": [{"c": "2"}]}) == ["/b[0]/c"]


def test_dashboard_is_grafana_schema(everything: list[Doc]) -> None:
    from grafana_foundation_sdk.cog import plugins
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    plugins.register_default_plugins()
    raw = (CHART / "files/dashboards/customer-classifier.json").read_text()
    dashboard = json.loads(raw)
    decoded = Dashboard.from_json(dashboard)
    # Grafana's typed models keep only the fields of its schema (and decode
    # enums, panel options and Prometheus queries by type); re-encoded, they
    # add the schema's defaults, but nothing we wrote may be lost or changed.
    assert lost(dashboard, json.loads(JSONEncoder().encode(decoded))) == []
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert all(p["targets"] and all(t["expr"] for t in p["targets"]) for p in panels)
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    (configmap,) = [
        c for c in of_kind(everything, "ConfigMap") if "dashboard" in c["metadata"]["name"]
    ]
    assert json.loads(configmap["data"]["customer-classifier.json"]) == dashboard


def test_every_alert_has_a_runbook_paragraph() -> None:
    alerts = yaml.safe_load((CHART / "files/alerts.yml").read_text())
    runbook = (ROOT / "docs/runbook.md").read_text()
    headings = {line[3:].strip() for line in runbook.splitlines() if line.startswith("## ")}
    for group in alerts["groups"]:
        for rule in group["rules"]:
            name = rule["alert"]
            assert name in headings, name
            assert rule["annotations"]["runbook_url"] == f"docs/runbook.md#{name.lower()}"
            assert rule["labels"]["severity"] in {"warning", "critical"}
            paragraph = runbook.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
            assert len(paragraph.split()) > 60, f"{name}: a runbook paragraph, not a stub"
