#!/usr/bin/env bash
# Start a local Prefect server, the process work pool and a worker (`make prefect-up`).
#
# The server listens on 127.0.0.1:$PREFECT_PORT, or on a free port the OS picks. Its database is
# SQLite in $PREFECT_HOME, or PostgreSQL when PREFECT_API_DATABASE_CONNECTION_URL is set
# (postgresql+asyncpg://USER@HOST:5432/DB). Each process runs in its own process group; pids, logs
# and the API URL go to $MODELYARD_PREFECT_STATE (default .modelyard/prefect/), which
# scripts/prefect-down.sh reads to stop exactly these processes. Running it again while they are
# up starts nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV_BIN=${VENV_BIN:-$ROOT/.venv/bin}
STATE=${MODELYARD_PREFECT_STATE:-$ROOT/.modelyard/prefect}
POOL=${MODELYARD_PREFECT_POOL:-modelyard-process}
HOST=127.0.0.1
READY_TIMEOUT_S=${PREFECT_UP_TIMEOUT_S:-90}
export PREFECT_HOME=${PREFECT_HOME:-$STATE}
export PREFECT_SERVER_ANALYTICS_ENABLED=${PREFECT_SERVER_ANALYTICS_ENABLED:-false}
mkdir -p "$STATE" "$PREFECT_HOME"

# A pid file whose process is alive and is one of Prefect's (not a recycled pid).
running() {
  local pid
  pid=$(cat "$STATE/$1.pid" 2>/dev/null) || return 1
  kill -0 "$pid" 2>/dev/null && ps -p "$pid" -o command= 2>/dev/null | grep -q prefect
}

# Start "$@" in a new session, so it leads its own process group and a stop reaches its children
# too. Python's setsid then exec keeps the pid (and works where setsid(1) is missing, as on macOS).
start() {
  local name=$1
  shift
  "$VENV_BIN/python" -c 'import os, sys; os.setsid(); os.execvp(sys.argv[1], sys.argv[1:])' \
    "$@" >"$STATE/$name.log" 2>&1 </dev/null &
  echo $! >"$STATE/$name.pid"
}

fail() {
  echo "prefect-up: $1; last lines of $STATE/$2.log:" >&2
  tail -n 20 "$STATE/$2.log" >&2 || true
  bash "$ROOT/scripts/prefect-down.sh" >&2 || true
  exit 1
}

if running server; then
  API_URL=$(cat "$STATE/api_url")
  echo "prefect-up: server already running at $API_URL (pid $(cat "$STATE/server.pid"))"
else
  PORT=${PREFECT_PORT:-$("$VENV_BIN/python" -c \
    'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
  API_URL="http://$HOST:$PORT/api"
  database=${PREFECT_API_DATABASE_CONNECTION_URL:+PostgreSQL (PREFECT_API_DATABASE_CONNECTION_URL)}
  echo "prefect-up: starting the server on $HOST:$PORT, database ${database:-SQLite in $PREFECT_HOME}"
  start server "$VENV_BIN/prefect" server start --host "$HOST" --port "$PORT"
  echo "$API_URL" >"$STATE/api_url"
  for _ in $(seq "$READY_TIMEOUT_S"); do
    "$VENV_BIN/python" -c "import sys, urllib.request
try: urllib.request.urlopen('$API_URL/health', timeout=2)
except Exception: sys.exit(1)" 2>/dev/null && break
    running server || fail "the server exited" server
    sleep 1
  done
  "$VENV_BIN/python" -c "import urllib.request; urllib.request.urlopen('$API_URL/health', timeout=2)" \
    2>/dev/null || fail "the server did not answer within ${READY_TIMEOUT_S}s" server
fi
export PREFECT_API_URL=$API_URL

"$VENV_BIN/python" -m infra.prefect.ops pool "$POOL" --type process

if running worker; then
  echo "prefect-up: worker already running (pid $(cat "$STATE/worker.pid"))"
else
  start worker "$VENV_BIN/prefect" worker start --pool "$POOL" --type process \
    --name "modelyard-$(hostname)-$$"
  for _ in $(seq 60); do
    grep -q "started!" "$STATE/worker.log" 2>/dev/null && break
    running worker || fail "the worker exited" worker
    sleep 0.5
  done
  grep -q "started!" "$STATE/worker.log" || fail "the worker did not start" worker
fi

echo "prefect-up: server $API_URL (UI: ${API_URL%/api}), pool $POOL, worker pid $(cat "$STATE/worker.pid")"
echo "prefect-up: for the prefect CLI in this shell: export PREFECT_API_URL=$API_URL"
