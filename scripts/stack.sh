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

ensure_browser() {
  # The console's browser tests drive Debian's chromium (no browser download); a CJK
  # font so its Chinese pages render (and the screenshots in docs/console/ read).
  local pkgs=()
  command -v chromium >/dev/null || pkgs+=(chromium)
  dpkg -s fonts-wqy-microhei >/dev/null 2>&1 || pkgs+=(fonts-wqy-microhei)
  [ ${#pkgs[@]} -eq 0 ] || apt_install "${pkgs[@]}"
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
  # Kept with the checkout (like its role), not with STACK_STATE_DIR: a second
  # state dir of the same checkout (a test's own broker or stack) logs in as
  # the same role and must not change its password.
  local f="$ROOT/.stack/db-password"
  mkdir -p "$ROOT/.stack"
  [ -s "$f" ] || { umask 077; head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$f"; }
  cat "$f"
}

identity_key() {
  # The key of the identity digests (HMAC of phone and e-mail): random, made
  # once per checkout and kept outside git (.stack/), like the database
  # password and for the same reason: every state dir of the checkout uses its
  # databases, whose digests only match under the key that made them. One key
  # feeds ingest (INGEST_IDENTITY_KEY) and the classifier (CLASSIFIER_IDENTITY_KEY);
  # a key of your own in either variable wins. Changing it re-keys identities (README).
  local given="${INGEST_IDENTITY_KEY:-${CLASSIFIER_IDENTITY_KEY:-}}"
  if [ -n "$given" ]; then
    [ "${INGEST_IDENTITY_KEY:-$given}" = "${CLASSIFIER_IDENTITY_KEY:-$given}" ] \
      || die "INGEST_IDENTITY_KEY and CLASSIFIER_IDENTITY_KEY differ: they must be the same secret"
    [[ "$given" =~ ^[A-Za-z0-9+/=_.-]{32,}$ ]] \
      || die "the identity key must be at least 32 characters of [A-Za-z0-9+/=_.-] (openssl rand -hex 32)"
    printf '%s' "$given"
    return 0
  fi
  local f="$ROOT/.stack/identity-key"
  mkdir -p "$ROOT/.stack"
  [ -s "$f" ] || (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$f.tmp" && mv "$f.tmp" "$f")
  cat "$f"
}

local_database_url() {  # local_database_url DBNAME
  echo "postgresql+asyncpg://$DB_USER:$(db_password)@127.0.0.1:$PGPORT/$1"
}

# From /: the postgres user may not enter the checkout (a private tmp dir, /root).
psql_admin() { (cd / && runuser -u postgres -- psql -p "$PGPORT" -v ON_ERROR_STOP=1 -qAt "$@"); }

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
}

ensure_database() {
  local owner
  owner="$(psql_admin -c "SELECT r.rolname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname='$1'")"
  if [ -z "$owner" ]; then
    log "creating database $1"
    psql_admin -c "CREATE DATABASE $1 OWNER $DB_USER"
  elif [ "$owner" != "$DB_USER" ]; then
    die "database $1 belongs to another stack (role $owner): set STACK_DB_NAME (and other ports) for this checkout"
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
  # The local cluster is on 127.0.0.1: no TLS to it (asyncpg would negotiate it,
  # ~9 % of the worker's time in a profile). A DATABASE_URL of your own keeps
  # whatever PGSSLMODE you set.
  local ssl=""
  [ -n "${DATABASE_URL:-}" ] || ssl="PGSSLMODE=${PGSSLMODE:-disable}"
  local key; key="$(identity_key)"
  echo "DATABASE_URL=$url KAFKA_BOOTSTRAP_SERVERS=$(kafka_bootstrap) INGEST_IDENTITY_KEY=$key CLASSIFIER_IDENTITY_KEY=$key $ssl"
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

# The three application processes run under supervisord (PyPI `supervisor`):
# it restarts any of them that exits or is killed, with a growing delay when
# one keeps failing at start-up, and keeps count. Its socket and config live
# in this checkout's state dir, so several checkouts never share one.
SUPERVISOR_CONF="$STATE/supervisord.conf"
SUPERVISOR_SOCK="$RUN/supervisor.sock"
APPS="ingest classifier-api classifier-worker classifier-dispatcher"
# The Fxiaoke sync runs only where a tenant is configured (README: Fxiaoke).
[ -z "${INGEST_FXIAOKE_APP_ID:-}" ] || APPS="$APPS fxiaoke-sync"
CLASSIFIER_WORKER_METRICS_PORT="${CLASSIFIER_WORKER_METRICS_PORT:-9102}"
# The webhook dispatcher's /metrics (README: Webhooks).
CLASSIFIER_WEBHOOK_METRICS_PORT="${CLASSIFIER_WEBHOOK_METRICS_PORT:-9104}"
# N worker processes in one consumer group (they split the activity topic's
# partitions). With N > 1 each gets its own metrics port, counting up from
# CLASSIFIER_WORKER_METRICS_PORT, and is named after it: classifier-worker-9102, ...
CLASSIFIER_WORKER_PROCESSES="${CLASSIFIER_WORKER_PROCESSES:-1}"
[[ "$CLASSIFIER_WORKER_PROCESSES" =~ ^[1-9][0-9]*$ ]] \
  || die "CLASSIFIER_WORKER_PROCESSES must be a whole number >= 1"
# Processes of each HTTP API (uvicorn --workers; they share the listening socket).
# Default: one per core. Compose and the Helm chart take the same settings.
INGEST_WORKERS="${INGEST_WORKERS:-$(nproc)}"
CLASSIFIER_API_WORKERS="${CLASSIFIER_API_WORKERS:-$(nproc)}"
[[ "$INGEST_WORKERS" =~ ^[1-9][0-9]*$ && "$CLASSIFIER_API_WORKERS" =~ ^[1-9][0-9]*$ ]] \
  || die "INGEST_WORKERS and CLASSIFIER_API_WORKERS must be whole numbers >= 1"

supervisorctl() { "$VENV/bin/supervisorctl" -c "$SUPERVISOR_CONF" "$@"; }

supervisor_alive() { [ -S "$SUPERVISOR_SOCK" ] && supervisorctl pid >/dev/null 2>&1; }

write_supervisor_conf() {
  local env_line; env_line="$(app_env | tr ' ' '\n' | sed 's/^\([^=]*\)=\(.*\)$/\1="\2"/' | paste -sd, -)"
  env_line="$env_line,CLASSIFIER_WORKER_METRICS_PORT=\"$CLASSIFIER_WORKER_METRICS_PORT\",PYTHONUNBUFFERED=\"1\""
  local tmp="$SUPERVISOR_CONF.tmp"; umask 077  # it holds the database password
  cat >"$tmp" <<CONF
; written by scripts/stack.sh on every \`make up\`; edits are lost
[unix_http_server]
file=$SUPERVISOR_SOCK
chmod=0700

[supervisord]
logfile=$LOGS/supervisord.log
logfile_maxbytes=10MB
pidfile=$RUN/supervisord.pid
directory=$ROOT
nodaemon=false
silent=true

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://$SUPERVISOR_SOCK

[program:ingest]
command=$VENV/bin/uvicorn ingest.app:create_app --factory --host $INGEST_HOST --port $INGEST_PORT --no-access-log --log-config $ROOT/deploy/logging.json --timeout-keep-alive 5 --limit-concurrency 2000 --http eventschemas.serving:GuardedHttpToolsProtocol --workers $INGEST_WORKERS

[program:classifier-api]
command=$VENV/bin/uvicorn classifier.app:create_app --factory --host $CLASSIFIER_HOST --port $CLASSIFIER_PORT --no-access-log --log-config $ROOT/deploy/logging.json --timeout-keep-alive 5 --limit-concurrency 2000 --http eventschemas.serving:GuardedHttpToolsProtocol --workers $CLASSIFIER_API_WORKERS

[program:classifier-worker]
command=$PY -m classifier.worker
; the worker commits or rolls back its batch on SIGTERM: give it time
stopwaitsecs=30
CONF
  if [ "$CLASSIFIER_WORKER_PROCESSES" -gt 1 ]; then
    # process_num runs from the first metrics port up: it is each one's port and name.
    cat >>"$tmp" <<CONF
numprocs=$CLASSIFIER_WORKER_PROCESSES
numprocs_start=$CLASSIFIER_WORKER_METRICS_PORT
process_name=%(program_name)s-%(process_num)d
CONF
  fi
  # After the worker's numprocs lines: they belong to the worker's section only.
  cat >>"$tmp" <<CONF

[program:classifier-dispatcher]
command=$VENV/bin/classifier dispatcher
; the batch in flight commits, attempts in flight get up to 5 s
stopwaitsecs=30
CONF
  if [[ " $APPS " == *" fxiaoke-sync "* ]]; then
    cat >>"$tmp" <<CONF

[program:fxiaoke-sync]
command=$PY -m ingest.cli fxiaoke run
stopwaitsecs=30
CONF
  fi
  local prog env logfile
  for prog in $APPS; do
    env="$env_line" logfile="$LOGS/$prog.log"
    if [ "$prog" = classifier-dispatcher ]; then
      env="$env,CLASSIFIER_WEBHOOK_METRICS_PORT=\"$CLASSIFIER_WEBHOOK_METRICS_PORT\""
    fi
    if [ "$prog" = classifier-worker ] && [ "$CLASSIFIER_WORKER_PROCESSES" -gt 1 ]; then
      logfile="$LOGS/$prog-%(process_num)d.log"  # one per process: classifier-worker-9102.log
      env="${env/CLASSIFIER_WORKER_METRICS_PORT=\"$CLASSIFIER_WORKER_METRICS_PORT\"/CLASSIFIER_WORKER_METRICS_PORT=\"%(process_num)d\"}"
    fi
    cat >>"$tmp" <<CONF

[program:$prog]
environment=$env
directory=$ROOT
autostart=true
; restarted whenever it exits or is killed; a process that dies within
; startsecs counts as a failed start and waits 1 s, 2 s, ... before the next
autorestart=true
startsecs=2
startretries=1000
stopsignal=TERM
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile=$logfile
stdout_logfile_maxbytes=50MB
stdout_logfile_backups=3
CONF
  done
  # supervisord reads each [program:x] once: merge the two parts per program.
  "$PY" - "$tmp" "$SUPERVISOR_CONF" <<'PYCONF'
import configparser, sys
parser = configparser.RawConfigParser(strict=False, interpolation=None)
parser.optionxform = str
parser.read(sys.argv[1])
with open(sys.argv[2], "w") as out:
    out.write("; written by scripts/stack.sh on every `make up`; edits are lost\n")
    parser.write(out)
PYCONF
  rm -f "$tmp"
}

http_ok() { "$PY" -c "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$1"; }

program_running() {  # program_running NAME [MIN_UPTIME_SECONDS]: every process of it
  local lines line up; lines="$(supervisorctl status "$1:*" 2>/dev/null)" || return 1
  [ -n "$lines" ] || return 1
  while IFS= read -r line; do
    [[ "$line" == *RUNNING* ]] || return 1
    up="$(sed -n 's/.*uptime \([0-9:]*\).*/\1/p' <<<"$line" | awk -F: '{print ($1*3600)+($2*60)+$3}')"
    [ "${up:-0}" -ge "${2:-0}" ] || return 1
  done <<<"$lines"
}

all_ready() {  # every process is up and answering, and has been for MIN seconds
  local min="${1:-0}" prog
  for prog in $APPS; do program_running "$prog" "$min" || return 1; done
  http_ok "http://$INGEST_HOST:$INGEST_PORT/readyz" && http_ok "http://$CLASSIFIER_HOST:$CLASSIFIER_PORT/readyz"
}

apps_up() {
  if ! supervisor_alive; then
    for port in "$INGEST_PORT" "$CLASSIFIER_PORT"; do
      port_open "$port" && die "port $port is taken by a process this stack did not start (stop it, or set another port)"
    done
    write_supervisor_conf
    log "starting ingest, classifier API, worker and webhook dispatcher under supervisord"
    (cd "$ROOT" && "$VENV/bin/supervisord" -c "$SUPERVISOR_CONF") \
      || die "supervisord did not start (see $LOGS/supervisord.log)"
  else
    supervisorctl start all >/dev/null || true
  fi
  wait_for "ingest, classifier API and worker" 90 all_ready 0
  # Ready once is not enough: report success only when every process has
  # stayed up and ready for a few seconds (a worker that dies 0.3 s after
  # start would otherwise pass).
  sleep 5
  all_ready 5 || { cmd_status >&2; die "a process did not stay up (logs: $LOGS)"; }
}

apps_down() {
  supervisor_alive || return 0
  log "stopping ingest, classifier API and worker"
  supervisorctl stop all >/dev/null || true
  supervisorctl shutdown >/dev/null || true
  for _ in $(seq 1 60); do [ -S "$SUPERVISOR_SOCK" ] || break; sleep 0.5; done
}

restarts_of() {  # how often supervisord saw NAME (any of its processes) end since it started
  grep -cE "(exited|gave up): $1(-[0-9]+)? " "$LOGS/supervisord.log" 2>/dev/null || true
}

# --------------------------------------------------------------- commands --

cmd_infra() {
  install_all
  postgres_up
  # The stack's own database (make test needs none: it makes a throw-away one).
  [ -n "${DATABASE_URL:-}" ] || ensure_database "$DB_NAME"
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
  ingest $INGEST_WORKERS process(es), classifier API $CLASSIFIER_API_WORKERS (INGEST_WORKERS, CLASSIFIER_API_WORKERS)
  classifier worker $CLASSIFIER_WORKER_PROCESSES process(es) under supervisord (metrics from :$CLASSIFIER_WORKER_METRICS_PORT; make status shows restarts)
  webhook dispatcher under supervisord (metrics :$CLASSIFIER_WEBHOOK_METRICS_PORT; README: Webhooks)
  Kafka            $(kafka_bootstrap)
  PostgreSQL       ${DATABASE_URL:-postgresql://$DB_USER:***@127.0.0.1:$PGPORT/$DB_NAME} (password in .stack/db-password)
  logs             $LOGS   (make logs)

Intake and the API need keys (shown once; only a hash is stored):
  env \$(scripts/stack.sh env) .venv/bin/classifier api-keys create --name shop --scope orders:write
  env \$(scripts/stack.sh env) .venv/bin/classifier api-keys create --name me --scope admin
  then send Authorization: Bearer <key>   (scopes: orders:write calls:write imports:write read admin)
EOF
}

cmd_down() {
  apps_down
  kafka_down
  postgres_down
}

cmd_status() {
  if pid_alive kafka kafka.Kafka 2>/dev/null; then echo "kafka: running (pid $(cat "$RUN/kafka.pid"))"
  else echo "kafka: stopped"; fi
  if supervisor_alive; then
    local prog line
    for prog in $APPS; do
      while IFS= read -r line; do
        echo "${line%% *}: $(awk '{$1=""; print substr($0,2)}' <<<"$line") (restarts: $(restarts_of "$prog"))"
      done < <(supervisorctl status "$prog:*" 2>/dev/null || echo "$prog unknown")
    done
  else
    for prog in $APPS; do echo "$prog: stopped"; done
  fi
  pg_lsclusters 2>/dev/null || true
}

case "${1:-up}" in
  up) cmd_up ;;
  down) cmd_down ;;
  infra) cmd_infra ;;
  install) install_all ;;
  install-browser) ensure_browser ;;
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
