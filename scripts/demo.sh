#!/usr/bin/env bash
# The main job on the built-in lab, from a fresh machine:
#   set up -> start a local Prefect server (API behind authentication) -> start the lab
#   -> save its credentials as blocks -> load its fleet -> replicate and verify every service
#   -> back up and prove a restore -> show the status -> serve the deployments so the Prefect
#   UI's run buttons work.
# Each step prints one line; its output goes to $HOTSPARE_HOME/run/demo.log (the log's end is
# printed when a step fails). `bash scripts/demo.sh stop` stops what it started (by PID) and
# takes the lab down. HOTSPARE_PREFECT_PORT (default 4200) and HOTSPARE_LAB_SLOT (default: the
# running lab's slot, else 0) let a second demo run beside the first.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$HOTSPARE_ROOT"

PORT="${HOTSPARE_PREFECT_PORT:-4200}"
export HOTSPARE_PREFECT_PORT="$PORT"
export PREFECT_API_URL="http://127.0.0.1:$PORT/api"
RUN="$HOTSPARE_HOME/run"
LOG="$RUN/demo.log"
mkdir -p "$RUN"

# step TITLE COMMAND...: one line on the terminal, the command's output in the log.
step() {
  local title="$1"
  shift
  echo "demo: $title"
  echo "== $(date -u +%FT%TZ) $title" >>"$LOG"
  "$@" >>"$LOG" 2>&1 || {
    echo "demo: failed: $title; the end of $LOG:" >&2
    tail -n 30 "$LOG" >&2
    exit 1
  }
}

# Running and not a zombie (a stopped process may wait a moment for PID 1 to reap it).
serve_alive() {
  local pid
  [ -f "$RUN/serve.pid" ] && pid="$(cat "$RUN/serve.pid")" && [ -r "/proc/$pid/stat" ] || return 1
  case "$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null)" in
    Z | X | "") return 1 ;;
  esac
}
stop_serve() {
  if serve_alive; then
    # setsid made it a process-group leader: stop the group (flow runs it started too).
    kill -TERM -- "-$(cat "$RUN/serve.pid")" 2>/dev/null || true
    for _ in $(seq 1 50); do serve_alive || break; sleep 0.2; done
    serve_alive && kill -KILL -- "-$(cat "$RUN/serve.pid")" 2>/dev/null || true
  fi
  rm -f "$RUN/serve.pid"
}

if [ "${1:-}" = "stop" ]; then
  step "stopping hotspare serve" stop_serve
  step "stopping the Prefect server" bash scripts/prefect-server.sh stop
  step "taking the lab down" hotspare lab down
  exit 0
fi

bash scripts/prefect-server.sh start
# Every command below (and `hotspare serve`) authenticates with the server's string.
PREFECT_API_AUTH_STRING="$(<"$HOTSPARE_HOME/prefect-api-auth")"
export PREFECT_API_AUTH_STRING

replicate_all() { hotspare replicate --all --json >"$RUN/replicate.json"; }
backup_all() { hotspare backup --all --json >"$RUN/backup.json" && hotspare restore-proof --all --json >"$RUN/restore-proof.json"; }
health_once() { hotspare health --json >"$RUN/health.json"; }

# A `hotspare serve` of an earlier demo whose lab is gone still answers that lab's acknowledgement
# port (the new lab refuses a taken port) and serves an old fleet: stop it before the lab starts.
if serve_alive && ! hotspare lab status ${HOTSPARE_LAB_SLOT:+--slot "$HOTSPARE_LAB_SLOT"} >/dev/null 2>&1; then
  step "stopping the hotspare serve of an earlier lab" stop_serve
fi
step "starting the lab" hotspare lab up ${HOTSPARE_LAB_SLOT:+--slot "$HOTSPARE_LAB_SLOT"}
# A lab built anew starts in its planned layout: an inventory kept from an earlier lab (where a
# service may have failed over) would describe servers that are no longer in that state. Keep it
# aside, named, and start a fresh one for this lab (a lab that was already up keeps its inventory).
LAB_STARTED="$(hotspare lab env --json | python -c 'import json,sys,pathlib; d=json.load(sys.stdin)["directory"]; print(json.loads(pathlib.Path(d, "state.json").read_text())["started_at"])')"
if [ -z "${HOTSPARE_DB_URL:-}" ] && [ -f "$HOTSPARE_HOME/inventory.db" ] \
   && [ "$(cat "$RUN/lab-started" 2>/dev/null)" != "$LAB_STARTED" ]; then
  kept="$HOTSPARE_HOME/inventory.db.before-$(date -u +%Y%m%dT%H%M%SZ)"
  for suffix in "" -wal -shm; do
    [ -f "$HOTSPARE_HOME/inventory.db$suffix" ] && mv "$HOTSPARE_HOME/inventory.db$suffix" "$kept$suffix"
  done
  echo "demo: a new lab: the inventory of the earlier one is kept as $kept"
fi
echo "$LAB_STARTED" >"$RUN/lab-started"
step "saving the lab's credentials as Prefect blocks" hotspare lab blocks
FLEET="$(hotspare lab env --json | python -c 'import json,sys; print(json.load(sys.stdin)["fleet_file"])')"
step "checking the fleet file $FLEET" hotspare fleet check "$FLEET" --blocks
step "loading the fleet into the inventory" hotspare fleet load "$FLEET"
step "replicating and verifying every service" replicate_all
step "backing up every service and proving a restore" backup_all
step "checking health from every site (servers, apps, DNS, RAID, power supplies, fans)" health_once
hotspare status

ACK_URL="$(python -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["incidents"]["acknowledgement_url"])' "$FLEET")"
# Until the webhook of `hotspare serve` answers (it starts after the deployments are registered).
webhook_answers() {
  python - "$ACK_URL" "$(cat "$RUN/serve.pid")" <<'PY'
import os, socket, sys, time
from urllib.parse import urlsplit
url, pid = urlsplit(sys.argv[1]), int(sys.argv[2])
deadline = time.monotonic() + 240
while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
    try:
        socket.create_connection((url.hostname, url.port), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.5)
print(f"hotspare serve (pid {pid}) did not answer {sys.argv[1]} within 240 s; see its log", file=sys.stderr)
sys.exit(1)
PY
}
if ! serve_alive; then
  setsid hotspare serve >"$RUN/serve.log" 2>&1 </dev/null &
  echo $! >"$RUN/serve.pid"
fi
step "serving the deployments and the acknowledgement webhook ($ACK_URL)" webhook_answers
cat <<MSG

Done. Open the Prefect UI: http://127.0.0.1:$PORT/
  - it asks for a password: paste the whole line of $HOTSPARE_HOME/prefect-api-auth
    (the API refuses requests without it; open the UI at / to log in: the older UI behind
    deep links such as /runs queries the API before its login and shows two error toasts);
  - flow runs "replicate" (every service inside it, a summary artifact each), "backup", "restore-proof"
    (Artifacts tab: replication summaries, verification tables);
  - Deployments: replicate-all is scheduled at 01:00 and 13:00 UTC, health every minute;
    failover, facility-failover, reprotect, verify, drill and rebuild have run buttons
    (the gated ones pause for your approval).
Pages are acknowledged as a callee would: a keypress 1 on the call or an SMS "ACK N" reaches
  hotspare serve's webhook at $ACK_URL (or: hotspare incident ack N --by NAME).
Commands in your shell:  . scripts/setup.sh && export PREFECT_API_URL=$PREFECT_API_URL
Try an outage:  hotspare lab fail prod-east; hotspare health --rounds 3; hotspare failover app1
  (health exits 9 when it finds a failed component: that is why these are joined with ";", not "&&")
Or a broken part:  hotspare lab break prod-east psu; hotspare health --rounds 3; hotspare hardware
Fleet file: $FLEET
Logs: $LOG, $RUN/serve.log      Stop everything: bash scripts/demo.sh stop
MSG
