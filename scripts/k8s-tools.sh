#!/usr/bin/env bash
# Builds the tools `make k8s-check` needs from the Go module proxy, once:
# helm (chart lint/template), kubeconform (schema validation) and promtool
# (alert rule tests). They land in K8S_TOOLS_BIN (default
# ~/.cache/classifier-stack/k8s-tools/bin, outside the repository); a tool
# already there at the pinned version is not rebuilt, so a second run costs
# nothing. Prints the bin directory on stdout.
#   scripts/k8s-tools.sh [helm|kubeconform|promtool ...]   (default: all three)
set -euo pipefail

HELM_VERSION=v3.22.0
KUBECONFORM_VERSION=v0.7.0
PROMETHEUS_MODULE_VERSION=v0.316.0   # the Go module version of Prometheus (promtool)

BIN="${K8S_TOOLS_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/classifier-stack/k8s-tools/bin}"
mkdir -p "$BIN"

if ! command -v go >/dev/null 2>&1; then
  for candidate in /usr/local/go/bin /usr/lib/go/bin; do
    [ -x "$candidate/go" ] && PATH="$candidate:$PATH"
  done
fi
command -v go >/dev/null 2>&1 || {
  echo "k8s-tools: Go is needed to build helm/kubeconform/promtool (apt-get install -y golang-go)" >&2
  exit 1
}

# install NAME VERSION PACKAGE [TAGS]: `go install PACKAGE@VERSION` unless
# BIN/NAME was built from that version and tags (a stamp file records which).
install() {
  local name=$1 version=$2 package=$3 tags=${4:-}
  local stamp="$BIN/.$name.version"
  if [ -x "$BIN/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version $tags" ]; then
    return 0
  fi
  echo "k8s-tools: building $name $version (once; go install $package@$version)" >&2
  GOBIN="$BIN" GOFLAGS="${GOFLAGS:-} -trimpath" CGO_ENABLED=0 \
    go install -tags="$tags" -ldflags="-s -w" "$package@$version" >&2
  echo "$version $tags" >"$stamp"
}

# One build at a time (two checkouts or a test and make k8s-check at once).
exec 9>"$BIN/.lock"
flock 9
for tool in "${@:-helm kubeconform promtool}"; do
  for tool in $tool; do
    case "$tool" in
      helm) install helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm ;;
      kubeconform) install kubeconform "$KUBECONFORM_VERSION" github.com/yannh/kubeconform/cmd/kubeconform ;;
      # remove_all_sd: Prometheus' own build tag that leaves out the cloud
      # service discoveries (AWS, Azure, GCE... SDKs); rule tests need none.
      promtool) install promtool "$PROMETHEUS_MODULE_VERSION" \
        github.com/prometheus/prometheus/cmd/promtool remove_all_sd ;;
      *) echo "k8s-tools: unknown tool $tool" >&2; exit 2 ;;
    esac
  done
done

echo "$BIN"
