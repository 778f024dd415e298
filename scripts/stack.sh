#!/usr/bin/env bash
# The local stack: PostgreSQL (Debian package, pg_ctlcluster), Apache Kafka
# (KRaft, assembled from Maven Central jars), and the three application
# processes. Every step is idempotent: running it twice is harmless, a stale
# pid file or a half-formatted Kafka data dir is detected and repaired.
#
#   scripts/stack.sh up        install what is missing, start everything, print URLs
#   scripts/stack.sh down      stop everything this script started
#   scripts/stack.sh infra     only PostgreSQL + Kafka (+ migrations, topics)
#   scripts/stack.sh logs      follow the logs
#   scripts/stack.sh status    what is running
#
# Overrides: DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS point at services run
# elsewhere (then nothing local is started for them); INGEST_PORT,
# CLASSIFIER_PORT, KAFKA_PORT, PGPORT move the local ports.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${STACK_STATE_DIR:-$ROOT/.stack}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/classifier-stack"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
LOGS="$STATE/logs"
RUN="$STATE/run"

KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/deploy/kafka/pom.xml")"
KAFKA_LIBS="$CACHE/kafka-$KAFKA_VERSION/libs"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
KAFKA_DATA="$STATE/kafka/data"
INGEST_HOST="${INGEST_HOST:-127.0.0.1}"
INGEST_PORT="${INGEST_PORT:-8001}"
CLASSIFIER_HOST="${CLASSIFIER_HOST:-127.0.0.1}"
CLASSIFIER_PORT="${CLASSIFIER_PORT:-8002}"
PGPORT="${PGPORT:-5432}"
DB_NAME="${STACK_DB_NAME:-classifier}"
# Each checkout has a database role of its own (named after its path), so a
# second checkout's `make up`/`make test` never changes the password another
# running stack logs in with. STACK_DB_USER overrides it.
DB_USER="${STACK_DB_USER:-classifier_$(printf '%s' "$ROOT" | sha1sum | cut -c1-8)}"

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

mkdir -p "$LOGS" "$RUN"

# ---------------------------------------------------------------- installs --

apt_install() {
  # apt-get needs root; the machine this project targets runs as root.
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} (apt)"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_system_packages() {
  local pkgs=()
  command -v java >/dev/null || pkgs+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || pkgs+=(maven)
  if [ -z "${DATABASE_URL:-}" ] && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    pkgs+=(postgresql)
  fi
  dpkg -s postgresql-client-common >/dev/null 2>&1 || pkgs+=(postgresql-client)
  [ ${#pkgs[@]} -eq 0 ] || apt_install "${pkgs[@]}"
}

ensure_venv() {
  local stamp="$VENV/.installed-$(sha1sum "$ROOT/pyproject.toml" | cut -c1-12)"
  [ -f "$stamp" ] && return 0
  log "installing Python packages into .venv"
  [ -x "$PY" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$VENV/bin/pip" install -q -e "$ROOT[dev]" >"$LOGS/pip.log" 2>&1 \
    || { tail -20 "$LOGS/pip.log" >&2; die "pip install failed"; }
  rm -f "$VENV"/.installed-*
  touch "$stamp"
}

ensure_kafka_jars() {
  if [ -f "$KAFKA_LIBS/.complete" ]; then return 0; fi
  log "assembling Kafka $KAFKA_VERSION from Maven Central into $KAFKA_LIBS"
  rm -rf "$KAFKA_LIBS"; mkdir -p "$KAFKA_LIBS"
  mvn -q -B -f "$ROOT/deploy/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$KAFKA_LIBS" >"$LOGS/maven.log" 2>&1 \
    || { tail -20 "$LOGS/maven.log" >&2; die "maven could not assemble the broker"; }
  ls "$KAFKA_LIBS"/kafka_2.13-*.jar >/dev/null 2>&1 || die "kafka jar missing after maven"
  touch "$KAFKA_LIBS/.complete"
}

install_all() {
  ensure_system_packages
  ensure_venv
  [ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ] || ensure_kafka_jars
}

# -------------------------------------------------------------- processes --

pid_alive() {  # pid_alive NAME -> 0 when .stack/run/NAME.pid names a live process
  local f="$RUN/$1.pid" pid
  [ -f "$f" ] || return 1
  pid="$(cat "$f")"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null \
     && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2"; then
    return 0
  fi
  log "removing stale pid file for $1"
  rm -f "$f"
  return 1
}

stop_pid() {  # stop_pid NAME MARKER: SIGTERM, wait, then SIGKILL
  pid_alive "$1" "$2" || return 0
  local pid; pid="$(cat "$RUN/$1.pid")"
  log "stopping $1 (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$RUN/$1.pid"
}

wait_for() {  # wait_for DESCRIPTION SECONDS COMMAND...
  local what="$1" secs="$2"; shift 2
  for _ in $(seq 1 $((secs * 2))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  die "$what did not become ready within ${secs}s (logs: $LOGS)"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ------------------------------------------------------------- PostgreSQL --

pg_version() { ls /usr/lib/postgresql | sort -V | tail -1; }

pg_cluster_port() { pg_lsclusters -h | awk -v v="$1" '$1==v && $2=="main" {print $3}'; }

db_password() {
  # A random password made on first use and kept outside git (.stack/).
  local f="$STATE/db-password"
  [ -s "$f" ] || { umask 077; head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$f"; }
  cat "$f"
}

local_database_url() {  # local_database_url DBNAME
  echo "postgresql+asyncpg://$DB_USER:$(db_password)@127.0.0.1:$PGPORT/$1"
}

psql_admin() { runuser -u postgres -- psql -p "$PGPORT" -v ON_ERROR_STOP=1 -qAt "$@"; }

postgres_up() {
  [ -n "${DATABASE_URL:-}" ] && { log "DATABASE_URL set: using that PostgreSQL"; return 0; }
  local ver; ver="$(pg_version)"
  if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$ver main"; then
    log "creating PostgreSQL $ver cluster 'main' on port $PGPORT"
    pg_createcluster -p "$PGPORT" "$ver" main >/dev/null
  fi
  local port; port="$(pg_cluster_port "$ver")"
  [ "$port" = "$PGPORT" ] || die "cluster $ver/main listens on $port, not PGPORT=$PGPORT"
  if ! pg_lsclusters -h | awk -v v="$ver" '$1==v && $2=="main" {print $4}' | grep -q online; then
    # A crashed server leaves postmaster.pid behind; pg_ctlcluster refuses
    # to start over a live one but cleans a stale one itself.
    log "starting PostgreSQL $ver/main"
    pg_ctlcluster "$ver" main start || die "PostgreSQL did not start (see /var/log/postgresql)"
    touch "$RUN/postgres.started"
  fi
  wait_for "PostgreSQL" 30 runuser -u postgres -- pg_isready -q -h 127.0.0.1 -p "$PGPORT"
  local pw; pw="$(db_password)"
  if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname='$DB_USER'")" != "1" ]; then
    psql_admin -c "CREATE ROLE $DB_USER LOGIN CREATEDB PASSWORD '$pw'"
  else
    psql_admin -c "ALTER ROLE $DB_USER LOGIN CREATEDB PASSWORD '$pw'"
  fi
  ensure_database "$DB_NAME"
}

ensure_database() {
  if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname='$1'")" != "1" ]; then
    log "creating database $1"
    psql_admin -c "CREATE DATABASE $1 OWNER $DB_USER"
  fi
}

other_stack_sessions() {  # client sessions of roles other than this checkout's
  psql_admin -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'
                 AND pid <> pg_backend_pid() AND usename IS DISTINCT FROM '$DB_USER'" 2>/dev/null || echo 0
}

postgres_down() {
  [ -f "$RUN/postgres.started" ] || return 0
  local ver; ver="$(pg_version)"
  local others; others="$(other_stack_sessions)"
  if [ "${others:-0}" != "0" ]; then
    # Another checkout's stack is using the shared cluster: leave it running.
    log "PostgreSQL $ver/main left running: $others session(s) of another stack use it"
    rm -f "$RUN/postgres.started"
    return 0
  fi
  log "stopping PostgreSQL $ver/main"
  pg_ctlcluster "$ver" main stop || true
  rm -f "$RUN/postgres.started"
}

# ------------------------------------------------------------------ Kafka --

kafka_bootstrap() { echo "${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:$KAFKA_PORT}"; }

kafka_java() {
  java $KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$ROOT/deploy/kafka/log4j.properties" \
    -cp "$KAFKA_LIBS/*" "$@"
}

kafka_format() {
  local props="$STATE/kafka/server.properties" cluster_file="$STATE/kafka/cluster-id"
  # A formatted dir has meta.properties naming our cluster id. Anything else
  # (an interrupted format, a different cluster) is wiped and formatted anew.
  if [ -f "$KAFKA_DATA/meta.properties" ] && [ -s "$cluster_file" ] \
     && grep -q "cluster.id=$(cat "$cluster_file")" "$KAFKA_DATA/meta.properties"; then
    return 0
  fi
  log "formatting Kafka storage in $KAFKA_DATA"
  rm -rf "$KAFKA_DATA"; mkdir -p "$KAFKA_DATA"
  local id; id="$(kafka_java kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)"
  [ -n "$id" ] || die "could not generate a Kafka cluster id"
  kafka_java kafka.tools.StorageTool format -t "$id" -c "$props" >"$LOGS/kafka-format.log" 2>&1 \
    || { cat "$LOGS/kafka-format.log" >&2; rm -rf "$KAFKA_DATA"; die "Kafka storage format failed"; }
  echo "$id" >"$cluster_file"
}

kafka_up() {
  [ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ] && { log "KAFKA_BOOTSTRAP_SERVERS set: using that broker"; return 0; }
  if pid_alive kafka kafka.Kafka; then
    wait_for "Kafka" 60 port_open "$KAFKA_PORT"
    return 0
  fi
  port_open "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by a process this stack did not start"
  mkdir -p "$STATE/kafka"
  sed -e "s|@PORT@|$KAFKA_PORT|g" -e "s|@CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
      -e "s|@DATA_DIR@|$KAFKA_DATA|g" \
      "$ROOT/deploy/kafka/server.properties.template" >"$STATE/kafka/server.properties"
  kafka_format
  log "starting Kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT (heap: $KAFKA_HEAP_OPTS)"
  nohup setsid java $KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$ROOT/deploy/kafka/log4j.properties" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$STATE/kafka/server.properties" \
    >>"$LOGS/kafka.log" 2>&1 </dev/null &
  echo $! >"$RUN/kafka.pid"
  wait_for "Kafka" 90 port_open "$KAFKA_PORT"
}

kafka_down() { stop_pid kafka kafka.Kafka; }

# ------------------------------------------------------------ application --

app_env() {  # the environment every application process gets
  local url="${DATABASE_URL:-$(local_database_url "$DB_NAME")}"
  echo "DATABASE_URL=$url KAFKA_BOOTSTRAP_SERVERS=$(kafka_bootstrap)"
}

migrate() {
  log "applying migrations (alembic upgrade head)"
  (cd "$ROOT" && env $(app_env) "$VENV/bin/alembic" upgrade head >>"$LOGS/migrate.log" 2>&1) \
    || { tail -30 "$LOGS/migrate.log" >&2; die "migrations failed"; }
}

ensure_topics() {
  (cd "$ROOT" && env $(app_env) "$PY" -m classifier.topics) >>"$LOGS/topics.log" 2>&1 \
    || { tail -20 "$LOGS/topics.log" >&2; die "could not create topics"; }
}

start_app() {  # start_app NAME MARKER COMMAND...
  local name="$1" marker="$2"; shift 2
  local port="${START_PORT:-}"
  pid_alive "$name" "$marker" && return 0
  if [ -n "$port" ] && port_open "$port"; then
    die "port $port is taken by a process this stack did not start (stop it, or set another port)"
  fi
  log "starting $name"
  # exec: the recorded pid is the application itself, and no shell is left
  # holding the caller's stdout.
  (cd "$ROOT" && exec nohup setsid env $(app_env) "$@") >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

http_ok() { "$PY" -c "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$1"; }

apps_up() {
  START_PORT="$INGEST_PORT" start_app ingest "ingest.app" "$VENV/bin/uvicorn" ingest.app:create_app --factory \
    --host "$INGEST_HOST" --port "$INGEST_PORT" --no-access-log --log-config "$ROOT/deploy/logging.json"
  START_PORT="$CLASSIFIER_PORT" start_app classifier-api "classifier.app" "$VENV/bin/uvicorn" classifier.app:create_app --factory \
    --host "$CLASSIFIER_HOST" --port "$CLASSIFIER_PORT" --no-access-log --log-config "$ROOT/deploy/logging.json"
  start_app classifier-worker "classifier.worker" "$PY" -m classifier.worker
  # The Fxiaoke sync runs only where a tenant is configured (README: Fxiaoke).
  [ -z "${INGEST_FXIAOKE_APP_ID:-}" ] || start_app fxiaoke-sync "ingest.cli" "$PY" -m ingest.cli fxiaoke run
  wait_for "ingest API" 60 http_ok "http://$INGEST_HOST:$INGEST_PORT/readyz"
  wait_for "classifier API" 60 http_ok "http://$CLASSIFIER_HOST:$CLASSIFIER_PORT/readyz"
  wait_for "classifier worker" 60 pid_alive classifier-worker classifier.worker
}

apps_down() {
  stop_pid fxiaoke-sync ingest.cli
  stop_pid classifier-worker classifier.worker
  stop_pid classifier-api classifier.app
  stop_pid ingest ingest.app
}

# --------------------------------------------------------------- commands --

cmd_infra() {
  install_all
  postgres_up
  kafka_up
  migrate
  ensure_topics
}

cmd_up() {
  local t0=$SECONDS
  cmd_infra
  apps_up
  cat <<EOF

Stack is up in $((SECONDS - t0))s.
  ingest API       http://$INGEST_HOST:$INGEST_PORT        (docs: /docs, health: /healthz /readyz, /metrics)
  classifier API   http://$CLASSIFIER_HOST:$CLASSIFIER_PORT        (docs: /docs, health: /healthz /readyz, /metrics)
  classifier worker pid $(cat "$RUN/classifier-worker.pid")
  Kafka            $(kafka_bootstrap)
  PostgreSQL       ${DATABASE_URL:-postgresql://$DB_USER:***@127.0.0.1:$PGPORT/$DB_NAME} (password in .stack/db-password)
  logs             $LOGS   (make logs)
EOF
}

cmd_down() {
  apps_down
  kafka_down
  postgres_down
}

cmd_status() {
  for p in "kafka kafka.Kafka" "ingest ingest.app" "classifier-api classifier.app" \
           "classifier-worker classifier.worker" "fxiaoke-sync ingest.cli"; do
    set -- $p
    if pid_alive "$1" "$2" 2>/dev/null; then echo "$1: running (pid $(cat "$RUN/$1.pid"))"
    else echo "$1: stopped"; fi
  done
  pg_lsclusters 2>/dev/null || true
}

case "${1:-up}" in
  up) cmd_up ;;
  down) cmd_down ;;
  infra) cmd_infra ;;
  install) install_all ;;
  env) app_env ;;
  database-url) local_database_url "${2:-$DB_NAME}" ;;
  create-database) postgres_up; ensure_database "$2" ;;
  drop-database) psql_admin -c "DROP DATABASE IF EXISTS $2 WITH (FORCE)" ;;
  drop-extra-databases)  # throw-away databases tests and benchmarks made
    # Only this checkout's (owned by its role): another stack's tests may be running.
    for db in $(psql_admin -c "SELECT d.datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba
                               WHERE r.rolname = '$DB_USER'
                                 AND (d.datname LIKE 'classifier\_extra\_%' OR d.datname LIKE 'classifier\_bench\_%')"); do
      psql_admin -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"
    done ;;
  kafka-up) install_all; kafka_up ;;
  kafka-down) kafka_down ;;
  postgres-up) postgres_up ;;
  postgres-down) postgres_down ;;
  status) cmd_status ;;
  logs) tail -n 50 -F "$LOGS"/*.log ;;
  *) die "unknown command '$1' (up, down, infra, logs, status)" ;;
esac
