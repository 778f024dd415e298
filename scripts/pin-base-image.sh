#!/usr/bin/env bash
# Re-pin the image's base (deploy/docker/Dockerfile, ARG PYTHON_BASE) to the
# current digest of its tag: the digest of the multi-platform index, so one pin
# serves amd64 and arm64. Needs a registry and `docker buildx` or `crane`.
#   scripts/pin-base-image.sh [python:3.11-slim-bookworm]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DOCKERFILE="$ROOT/deploy/docker/Dockerfile"
TAG="${1:-$(sed -n 's/^ARG PYTHON_BASE=\([^@]*\)@.*/\1/p' "$DOCKERFILE")}"

if command -v crane >/dev/null 2>&1; then
  digest="$(crane digest "$TAG")"
elif docker buildx version >/dev/null 2>&1; then
  digest="$(docker buildx imagetools inspect "$TAG" --format '{{json .Manifest.Digest}}' | tr -d '"')"
else
  echo "pin-base-image: needs crane or docker buildx" >&2
  exit 1
fi
[[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || { echo "pin-base-image: unexpected digest '$digest'" >&2; exit 1; }
sed -i "s|^ARG PYTHON_BASE=.*|ARG PYTHON_BASE=$TAG@$digest|" "$DOCKERFILE"
echo "pinned $TAG@$digest"
