#!/usr/bin/env bash
# The test command: sets everything up, then runs the whole suite against real servers
# (the lab: OpenSSH, BIND, rsync, restic, SMTP) and a real Prefect API (test harness).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k fleet`.
# The whole suite (no arguments) runs in HOTSPARE_TEST_WORKERS processes (default 2), each with
# its own lab slot (HOTSPARE_TEST_SLOT, default 1, and the next ones) and Prefect API; a test
# module stays in one process. With arguments it runs in one process unless that is set.
# The session inventory is PostgreSQL (a server the session starts, tests/postgres_helpers.py),
# the database facility workers share (docs/operations.md); SQLite stays covered by the tests
# that pin it (test_locks.py, test_local_secrets.py) and the demo. HOTSPARE_TEST_DB=sqlite runs
# the lab tests on SQLite instead.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$HOTSPARE_ROOT"
export HOTSPARE_HOME="$(mktemp -d /tmp/hotspare-test.XXXXXX)"
export PREFECT_HOME="$HOTSPARE_HOME/prefect"
export HOTSPARE_TEST_DB="${HOTSPARE_TEST_DB:-postgresql}"
workers="${HOTSPARE_TEST_WORKERS:-}"
if [ $# -eq 0 ]; then
  workers="${workers:-2}"
fi
if [ -n "$workers" ] && [ "$workers" -gt 1 ]; then
  exec python -m pytest -q -n "$workers" --dist loadfile "$@"
fi
exec python -m pytest -q "$@"
