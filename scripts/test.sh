#!/usr/bin/env bash
# The test command: sets everything up, then runs the whole suite against real servers
# (the lab: OpenSSH, BIND, rsync, restic, SMTP) and a real Prefect API (test harness).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k fleet`.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$HOTSPARE_ROOT"
export HOTSPARE_HOME="$(mktemp -d /tmp/hotspare-test.XXXXXX)"
export PREFECT_HOME="$HOTSPARE_HOME/prefect"
exec python -m pytest -q "$@"
