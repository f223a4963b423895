#!/usr/bin/env bash
# The test command: sets everything up, then runs the whole suite against real servers
# (the lab: OpenSSH, BIND, rsync, restic, SMTP) and a real Prefect API (test harness).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k fleet`.
# The whole suite (no arguments) runs in HOTSPARE_TEST_WORKERS processes (default 2), each with
# its own lab slot (HOTSPARE_TEST_SLOT, default 1, and the next ones) and Prefect API; a test
# module stays in one process. With arguments it runs in one process unless that is set.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$HOTSPARE_ROOT"
export HOTSPARE_HOME="$(mktemp -d /tmp/hotspare-test.XXXXXX)"
export PREFECT_HOME="$HOTSPARE_HOME/prefect"
workers="${HOTSPARE_TEST_WORKERS:-}"
if [ $# -eq 0 ]; then
  workers="${workers:-2}"
fi
if [ -n "$workers" ] && [ "$workers" -gt 1 ]; then
  exec python -m pytest -q -n "$workers" --dist loadfile "$@"
fi
exec python -m pytest -q "$@"
