#!/usr/bin/env bash
# Idempotent set-up shared by the quick-start commands and CI: Debian packages, a virtual
# environment installed from the hash-pinned lock, and the environment hotspare runs with.
# Source it (". scripts/setup.sh") so the exports reach the caller.
set -euo pipefail
HOTSPARE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export HOTSPARE_ROOT

need_packages() {
  local missing=0
  for path in /usr/sbin/sshd /usr/sbin/named /usr/bin/restic /usr/bin/rsync /usr/bin/dig /usr/bin/nsupdate /usr/sbin/ip /usr/bin/curl /usr/sbin/tsig-keygen /usr/bin/python3 /usr/bin/ssh-keygen; do
    [ -x "$path" ] || { missing=1; break; }
  done
  return $((1 - missing))
}

if need_packages; then
  echo "setup: installing Debian packages (openssh, rsync, bind9, restic, iproute2, curl)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    openssh-server openssh-client rsync bind9 bind9-utils bind9-dnsutils restic iproute2 curl \
    procps passwd python3 >/dev/null
fi

VENV="$HOTSPARE_ROOT/.venv"
STAMP="$VENV/.lock-sha256"
LOCK_SUM="$(sha256sum "$HOTSPARE_ROOT/requirements.lock" "$HOTSPARE_ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$LOCK_SUM" ]; then
  echo "setup: installing Python dependencies from requirements.lock"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$VENV/bin/python" -m pip install -q --require-hashes -r "$HOTSPARE_ROOT/requirements.lock"
  "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$HOTSPARE_ROOT" 2>/dev/null \
    || "$VENV/bin/python" -m pip install -q --no-deps -e "$HOTSPARE_ROOT"
  echo "$LOCK_SUM" >"$STAMP"
fi
export PATH="$VENV/bin:$PATH"

# Prefect runs offline, with its own home, and quietly.
export HOTSPARE_HOME="${HOTSPARE_HOME:-$HOME/.hotspare}"
export PREFECT_HOME="${PREFECT_HOME:-$HOTSPARE_HOME/prefect}"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export DO_NOT_TRACK=1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="${PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS:-120}"
export PREFECT_LOGGING_EXTRA_LOGGERS="${PREFECT_LOGGING_EXTRA_LOGGERS:-paramiko}"
mkdir -p "$HOTSPARE_HOME" "$PREFECT_HOME"
