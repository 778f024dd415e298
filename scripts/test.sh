#!/usr/bin/env bash
# `make test`: lint, type-check, and run the whole suite on the real stack
# (PostgreSQL + Kafka started here if they are not running) with a throw-away
# database and per-test topics. Whatever this script started, it stops.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK="$ROOT/scripts/stack.sh"
STATE="${STACK_STATE_DIR:-$ROOT/.stack}"
PY="$ROOT/.venv/bin"
cd "$ROOT"

"$STACK" install
"$STACK" install-browser

kafka_was_up=0; pg_was_up=0
status="$("$STACK" status 2>/dev/null || true)"
if [ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ] || [[ "$status" == *"kafka: running"* ]]; then
  kafka_was_up=1
fi
if [ -n "${DATABASE_URL:-}" ] || [[ "$status" == *" online "* ]]; then
  pg_was_up=1
fi

TEST_DB="classifier_test_$(date +%s)_$$"
cleanup() {
  local rc=$?
  if [ -z "${DATABASE_URL:-}" ]; then
    "$STACK" drop-database "$TEST_DB" >/dev/null 2>&1 || true
    "$STACK" drop-extra-databases >/dev/null 2>&1 || true
  fi
  [ "$kafka_was_up" = 1 ] || "$STACK" kafka-down || true
  [ "$pg_was_up" = 1 ] || "$STACK" postgres-down || true
  exit $rc
}
trap cleanup EXIT

"$STACK" postgres-up
"$STACK" kafka-up

if [ -n "${DATABASE_URL:-}" ]; then
  export TEST_DATABASE_URL="${TEST_DATABASE_URL:-$DATABASE_URL}"
else
  "$STACK" create-database "$TEST_DB"
  export TEST_DATABASE_URL="$("$STACK" database-url "$TEST_DB")"
fi
export KAFKA_BOOTSTRAP_SERVERS="${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:${KAFKA_PORT:-9092}}"

if [ -z "${SKIP_LINT:-}" ]; then
  echo "== ruff"; "$PY/ruff" check .
  echo "== ruff format"; "$PY/ruff" format --check . >/dev/null || { "$PY/ruff" format --diff . | head -40; exit 1; }
  echo "== mypy --strict"; "$PY/mypy"
  echo "== k8s-check"; bash "$ROOT/scripts/k8s-check.sh"
fi
echo "== pytest"
"$PY/pytest" -q -p no:cacheprovider "$@"
