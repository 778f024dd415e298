#!/usr/bin/env bash
# `make k8s-check` (also run by `make test`): the Helm chart, its alert rules
# and its dashboard checked without a cluster.
#   1. helm lint, with the default values and with every optional feature on;
#   2. helm template of both, every object validated by kubeconform against
#      the Kubernetes 1.31 and 1.37 schemas (from the kubernetes-validate
#      package, made standalone by scripts/k8s_schemas.py) and the CRD objects against the pinned CRD schemas
#      (deploy/helm/crd-schemas, where they come from: its README);
#   3. promtool check rules + promtool test rules on the alerts;
#   4. the policy and dashboard tests (tests/unit/test_chart.py).
# The tools are built once by scripts/k8s-tools.sh; a second run starts at once.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin"
CHART="$ROOT/deploy/helm/customer-classifier"
CRDS="$ROOT/deploy/helm/crd-schemas"
cd "$ROOT"

[ -x "$PY/python" ] || bash "$ROOT/scripts/stack.sh" install
BIN="$(bash "$ROOT/scripts/k8s-tools.sh")"
export K8S_TOOLS_BIN="$BIN"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

echo "== helm lint"
KUBE=1.31.0   # the oldest Kubernetes the chart supports (Chart.yaml kubeVersion)
"$BIN/helm" lint --strict --quiet --kube-version "$KUBE" "$CHART"
"$BIN/helm" lint --strict --quiet --kube-version "$KUBE" "$CHART" -f "$CHART/ci/all-features-values.yaml"

echo "== helm template"
"$BIN/helm" template customer-classifier "$CHART" --namespace classifier --kube-version "$KUBE" \
  >"$OUT/default.yaml"
"$BIN/helm" template customer-classifier "$CHART" --namespace classifier --kube-version "$KUBE" \
  -f "$CHART/ci/all-features-values.yaml" >"$OUT/all-features.yaml"

echo "== kubeconform"
# Standalone copies, cached per kubernetes-validate release (they are derived from it).
KV="$("$PY/python" -c 'from importlib.metadata import version; print(version("kubernetes-validate"))')"
SCHEMAS="$BIN/../schemas/kubernetes-validate-$KV"
for version in 1.31.0 1.37.0; do
  "$PY/python" "$ROOT/scripts/k8s_schemas.py" "$SCHEMAS" "$version" "$OUT/default.yaml" "$OUT/all-features.yaml"
  "$BIN/kubeconform" -strict -summary -output text \
    -kubernetes-version "$version" \
    -schema-location "$SCHEMAS/v$version-standalone-strict/{{.ResourceKind}}{{.KindSuffix}}.json" \
    -schema-location "$CRDS/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json" \
    "$OUT/default.yaml" "$OUT/all-features.yaml"
done

echo "== promtool"
ALERTS="$CHART/files"
"$BIN/promtool" check rules "$ALERTS/alerts.yml"
(cd "$ALERTS" && "$BIN/promtool" test rules alerts.test.yml)

echo "== chart policy and dashboard"
"$PY/pytest" -q -p no:cacheprovider "$ROOT/tests/unit/test_chart.py"
