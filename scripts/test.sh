#!/usr/bin/env bash
# The test command: sets everything up, then runs the whole suite against real servers
# (the lab: OpenSSH, BIND, rsync, restic, SMTP) and a real Prefect API (test harness).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k fleet`.
# The whole suite (no arguments) runs in HOTSPARE_TEST_WORKERS processes (default 3), each with
# its own lab slot (HOTSPARE_TEST_SLOT, default 1, and the next ones) and Prefect API; a test
# module stays in one process. With arguments it runs in one process unless that is set.
# Three on two cores: a lab test mostly waits (SSH timeouts, restic's retries, workers polling);
# the run needs about 18 CPU-minutes, under 1.2 of the 2 cores in CI's 15-minute run with two.
# On one shared, loaded machine three took 24 minutes where two took 43 (bench/suite_schedule.py
# prints a run's seconds per module and how evenly the processes were loaded).
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
# Every process the suite starts names its home (or pytest's temporary folder, kept inside it) or
# inherits HOTSPARE_SUITE_RUN: after pytest, scripts/leftover_processes.py lists any still
# running, ends them by PID and fails the run. In CI (CI=true, or .ci/run) a lab test that skips
# (no root, no namespaces, no PostgreSQL) fails too (tests/conftest.py, HOTSPARE_REQUIRE_LAB).
export HOTSPARE_SUITE_RUN="${HOTSPARE_HOME##*/}"
if [ "${CI:-}" = "true" ]; then
  export HOTSPARE_REQUIRE_LAB="${HOTSPARE_REQUIRE_LAB:-1}"
fi
workers="${HOTSPARE_TEST_WORKERS:-}"
if [ $# -eq 0 ]; then
  workers="${workers:-3}"
fi
options=(-q --basetemp "$HOTSPARE_HOME/pytest")
if [ -n "$workers" ] && [ "$workers" -gt 1 ]; then
  options+=(-n "$workers" --dist loadfile)
fi
status=0
python -m pytest "${options[@]}" "$@" || status=$?
python scripts/leftover_processes.py --run-id "$HOTSPARE_SUITE_RUN" "$HOTSPARE_HOME" || {
  [ "$status" -ne 0 ] || status=1
}
# A passing run's home (lab disks, logs: about a gigabyte) goes; a failing one's stays for its logs.
if [ "$status" -eq 0 ]; then
  rm -rf --one-file-system -- "$HOTSPARE_HOME"
else
  echo "test.sh: the run's logs and lab are kept in $HOTSPARE_HOME" >&2
fi
exit "$status"
