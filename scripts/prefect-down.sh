#!/usr/bin/env bash
# Stop what scripts/prefect-up.sh started (`make prefect-down`): the worker, then the server.
#
# Each is stopped by the process group of the pid in $MODELYARD_PREFECT_STATE/<name>.pid (flow
# runs the worker started go with it). A process worker ignores the first SIGTERM for more than
# 20 s but ends within a second of a second one: after a short grace the group gets a second
# SIGTERM, and SIGKILL if even that has not ended it within the grace.
set -uo pipefail
cd "$(dirname "$0")/.."
STATE=${MODELYARD_PREFECT_STATE:-$(pwd)/.modelyard/prefect}
GRACE_S=${PREFECT_DOWN_GRACE_S:-3}

alive() { kill -0 "$1" 2>/dev/null; }

# Wait up to $2 seconds for pid $1 to exit; true when it did.
gone_within() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    alive "$1" || return 0
    sleep 0.1
  done
  ! alive "$1"
}

stop() {
  local name=$1 file="$STATE/$1.pid" pid
  pid=$(cat "$file" 2>/dev/null) || { echo "prefect-down: no $name running"; return 0; }
  if ! alive "$pid"; then
    echo "prefect-down: $name (pid $pid) had already exited"
  elif ! ps -p "$pid" -o command= 2>/dev/null | grep -q prefect; then
    echo "prefect-down: pid $pid is no longer a Prefect process; not touching it" >&2
  else
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
    if ! gone_within "$pid" "$GRACE_S"; then
      echo "prefect-down: $name still up after ${GRACE_S}s; second SIGTERM"
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
      gone_within "$pid" "$GRACE_S" || { kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"; }
    fi
    # Anything else left in the group (a flow run's children) goes too.
    kill -KILL -- "-$pid" 2>/dev/null || true
    echo "prefect-down: stopped $name (pid $pid)"
  fi
  rm -f "$file"
}

stop worker
stop server
rm -f "$STATE/api_url"
