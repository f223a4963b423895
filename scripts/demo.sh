#!/usr/bin/env bash
# The main job on the built-in lab, from a fresh machine:
#   set up -> start a local Prefect server -> start the lab -> save its credentials as blocks
#   -> load its fleet -> replicate and verify every service -> back up and prove a restore
#   -> show the status -> serve the deployments so the Prefect UI's run buttons work.
# `bash scripts/demo.sh stop` stops what it started (by PID) and takes the lab down.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$HOTSPARE_ROOT"

PORT="${HOTSPARE_PREFECT_PORT:-4200}"
export PREFECT_API_URL="http://127.0.0.1:$PORT/api"
RUN="$HOTSPARE_HOME/run"
mkdir -p "$RUN"

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
stop_pid() {
  if alive "$1"; then
    kill "$(cat "$1")" 2>/dev/null || true
    for _ in $(seq 1 50); do alive "$1" || break; sleep 0.2; done
    alive "$1" && kill -9 "$(cat "$1")" 2>/dev/null || true
  fi
  rm -f "$1"
}

if [ "${1:-}" = "stop" ]; then
  stop_pid "$RUN/serve.pid"
  stop_pid "$RUN/prefect-server.pid"
  hotspare lab down
  exit 0
fi

if ! curl -sf "$PREFECT_API_URL/health" >/dev/null; then
  echo "demo: starting a Prefect server on 127.0.0.1:$PORT (log: $RUN/prefect-server.log)"
  setsid prefect server start --host 127.0.0.1 --port "$PORT" >"$RUN/prefect-server.log" 2>&1 &
  echo $! >"$RUN/prefect-server.pid"
  for _ in $(seq 1 120); do curl -sf "$PREFECT_API_URL/health" >/dev/null && break; sleep 1; done
  curl -sf "$PREFECT_API_URL/health" >/dev/null || { echo "demo: the Prefect server did not start; see $RUN/prefect-server.log"; exit 1; }
fi

hotspare lab up >/dev/null
hotspare lab blocks
FLEET="$(hotspare lab env --json | python -c 'import json,sys; print(json.load(sys.stdin)["fleet_file"])')"
hotspare fleet check "$FLEET" --blocks
hotspare fleet load "$FLEET"

echo "demo: replicating and verifying every service"
hotspare replicate --all >"$RUN/replicate.json"
echo "demo: backing up every service and proving a restore"
hotspare backup --all >"$RUN/backup.json"
hotspare restore-proof --all >"$RUN/restore-proof.json"
hotspare status

if ! alive "$RUN/serve.pid"; then
  setsid hotspare serve >"$RUN/serve.log" 2>&1 &
  echo $! >"$RUN/serve.pid"
fi
cat <<MSG

Done. Open the Prefect UI: http://127.0.0.1:$PORT/runs
  - flow runs "replicate" (one "replicate-service" per service), "backup", "restore-proof"
    (Artifacts tab: replication summaries, verification tables);
  - Deployments: replicate-all is scheduled at 01:00 and 13:00 UTC; failover, reprotect,
    verify and rebuild have run buttons (failover pauses for your approval).
Try an outage:  hotspare lab fail prod-east && hotspare failover app1
Fleet file: $FLEET      Stop everything: bash scripts/demo.sh stop
MSG
