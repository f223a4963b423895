#!/usr/bin/env bash
# The local Prefect server hotspare starts, with its API behind authentication:
#   bash scripts/prefect-server.sh start   start it (or check the running one) on 127.0.0.1:PORT
#   bash scripts/prefect-server.sh stop    stop the one started here (by its PID file)
# PORT is $HOTSPARE_PREFECT_PORT (default 4200). Block documents hold the fleet's SSH keys,
# DNS key and backup password, and `?include_secrets=true` returns them in plain text to anyone
# the API answers, so the server requires HTTP basic auth with the string kept in
# $HOTSPARE_HOME/prefect-api-auth ("hotspare:<random>", mode 0600 in a 0700 folder), made once
# from the system's cryptographic random. The string travels only in environment variables
# (PREFECT_SERVER_API_AUTH_STRING for the server, PREFECT_API_AUTH_STRING for clients) and a
# curl config on stdin: never in argv, never in a log. The Prefect UI asks for it.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

PORT="${HOTSPARE_PREFECT_PORT:-4200}"
API_URL="http://127.0.0.1:$PORT/api"
RUN="$HOTSPARE_HOME/run"
AUTH_FILE="$HOTSPARE_HOME/prefect-api-auth"
PID_FILE="$RUN/prefect-server.pid"
LOG_FILE="$RUN/prefect-server.log"

ensure_auth_file() {
  [ -s "$AUTH_FILE" ] && return 0
  local draft
  draft="$(mktemp "$AUTH_FILE.XXXXXX")"  # mktemp creates it 0600
  python3 -c 'import secrets; print("hotspare:" + secrets.token_urlsafe(32))' >"$draft"
  mv -n "$draft" "$AUTH_FILE" || true  # a concurrent start that won keeps its string
  rm -f "$draft"
  [ -s "$AUTH_FILE" ]
}

# Running and not a zombie (a stopped server may wait a moment for its parent to reap it).
alive() {
  local pid state
  [ -f "$PID_FILE" ] && pid="$(cat "$PID_FILE")" && [ -r "/proc/$pid/stat" ] || return 1
  state="$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null)" || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

healthy() { curl -sf -o /dev/null --max-time 5 "$API_URL/health"; }

# HTTP status of an API request sent without credentials / with the auth string (from stdin).
status_without_auth() { curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$API_URL/admin/version"; }
status_with_auth() {
  printf 'user = "%s"\n' "$(<"$AUTH_FILE")" \
    | curl -s -o /dev/null -w '%{http_code}' --max-time 10 -K - "$API_URL/admin/version"
}

check_auth() {
  local anonymous authenticated
  anonymous="$(status_without_auth)"
  authenticated="$(status_with_auth)"
  if [ "$anonymous" != 401 ]; then
    echo "prefect-server: the Prefect server on 127.0.0.1:$PORT answers without authentication" \
         "(HTTP $anonymous); stop it (bash scripts/demo.sh stop, or its own way) and start again" >&2
    return 1
  fi
  if [ "$authenticated" != 200 ]; then
    echo "prefect-server: the Prefect server on 127.0.0.1:$PORT refuses the string in $AUTH_FILE" \
         "(HTTP $authenticated); it was started with another one: stop it and start again" >&2
    return 1
  fi
}

start() {
  mkdir -p "$RUN"
  ensure_auth_file
  if ! healthy; then
    echo "prefect-server: starting on 127.0.0.1:$PORT (log: $LOG_FILE)"
    # PREFECT_UI_API_URL: the UI in the browser talks to this port, not the default one.
    PREFECT_SERVER_API_AUTH_STRING="$(<"$AUTH_FILE")" PREFECT_API_AUTH_STRING="$(<"$AUTH_FILE")" \
      PREFECT_UI_API_URL="$API_URL" setsid prefect server start --host 127.0.0.1 --port "$PORT" >"$LOG_FILE" 2>&1 </dev/null &
    echo $! >"$PID_FILE"
    local deadline=$((SECONDS + ${HOTSPARE_PREFECT_START_SECONDS:-180}))
    until healthy; do
      if ! alive || [ "$SECONDS" -ge "$deadline" ]; then
        echo "prefect-server: the server did not become healthy; the end of $LOG_FILE:" >&2
        tail -n 25 "$LOG_FILE" >&2
        return 1
      fi
      sleep 0.5
    done
  fi
  check_auth
}

stop() {
  alive || { rm -f "$PID_FILE"; return 0; }
  local pid
  pid="$(cat "$PID_FILE")"
  # setsid made the server the leader of its own process group: stop the group (its uvicorn
  # workers too), then wait for the leader with a deadline.
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 15))
  while alive && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
  if alive; then kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$PID_FILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: bash scripts/prefect-server.sh start|stop" >&2; exit 2 ;;
esac
