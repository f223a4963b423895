#!/usr/bin/env bash
# Idempotent set-up shared by the quick-start commands and CI: Debian packages, a virtual
# environment installed from the hash-pinned lock, and the environment hotspare runs with.
# Source it (". scripts/setup.sh") so the exports reach the caller.
#
# Safe to source from an interactive shell: the installing runs in a subshell with its own
# strict options, so the caller's shell options (-e, -u, pipefail) stay exactly as they were
# and a failure returns 1 instead of closing the terminal. Installers write to
# $HOTSPARE_HOME/setup.log; each stage prints one line, and the log's tail when it fails.
# When there is nothing to install it prints nothing.

HOTSPARE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export HOTSPARE_ROOT
HOTSPARE_HOME="${HOTSPARE_HOME:-$(cd ~ && pwd)/.hotspare}"
export HOTSPARE_HOME
PREFECT_HOME="${PREFECT_HOME:-$HOTSPARE_HOME/prefect}"
export PREFECT_HOME

# The subshell runs as an `if` condition, where bash ignores `set -e`: every step checks itself.
if ! (
  set -uo pipefail
  # HOTSPARE_HOME holds the inventory, lab keys and the Prefect API auth string: owner only.
  (umask 077 && mkdir -p "$HOTSPARE_HOME" "$PREFECT_HOME") && chmod 0700 "$HOTSPARE_HOME" || exit 1
  log="$HOTSPARE_HOME/setup.log"

  stage() {  # stage TITLE COMMAND...: one line on the terminal, the output in the log.
    local title="$1"
    shift
    echo "setup: $title"
    echo "== $(date -u +%FT%TZ) $title" >>"$log"
    if ! "$@" >>"$log" 2>&1; then
      echo "setup: failed: $title; the end of $log:" >&2
      tail -n 25 "$log" >&2
      return 1
    fi
  }

  packages_missing() {
    local path
    for path in /usr/sbin/sshd /usr/sbin/named /usr/bin/restic /usr/bin/rsync /usr/bin/dig /usr/bin/nsupdate \
                /usr/sbin/ip /usr/bin/curl /usr/sbin/tsig-keygen /usr/bin/python3 /usr/bin/ssh-keygen \
                /usr/bin/rrsync /usr/bin/btrfs /usr/sbin/losetup /usr/bin/ipmi_sim /usr/bin/sdrcomp /usr/bin/ipmitool \
                /usr/bin/pg_ctlcluster /usr/bin/chromium /usr/bin/pdftoppm /usr/sbin/unbound \
                /usr/bin/faketime /usr/sbin/nginx /usr/bin/openssl; do
      [ -x "$path" ] || return 0
    done
    return 1
  }

  install_packages() {
    apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        openssh-server openssh-client rsync bind9 bind9-utils bind9-dnsutils restic iproute2 curl \
        procps passwd python3 btrfs-progs util-linux openipmi ipmitool postgresql chromium poppler-utils \
        fonts-dejavu-core unbound faketime nginx openssl
  }

  install_python() {
    python3 -m venv "$venv" \
      && "$venv/bin/python" -m pip install -q --upgrade pip \
      && "$venv/bin/python" -m pip install -q --require-hashes -r "$HOTSPARE_ROOT/requirements.lock" \
      && { "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$HOTSPARE_ROOT" \
           || "$venv/bin/python" -m pip install -q --no-deps -e "$HOTSPARE_ROOT"; } \
      && echo "$lock_sum" >"$stamp"
  }

  if packages_missing; then
    stage "installing Debian packages (openssh, rsync, bind9, restic, btrfs, openipmi, postgresql, nginx, chromium)" install_packages || exit 1
  fi
  venv="$HOTSPARE_ROOT/.venv"
  stamp="$venv/.lock-sha256"
  # Over the files' contents only, so a checkout in another folder shares an installed venv;
  # the lint and type-check settings of pyproject.toml ([tool.ruff*], [tool.mypy*]) install
  # nothing and are left out, so changing them never reinstalls.
  install_settings() {
    awk '/^\[/ { skip = ($0 ~ /^\[\[?tool\.(ruff|mypy)/) } skip { next } /^$/ { blank = blank "\n"; next }
         { printf "%s%s\n", blank, $0; blank = "" }' "$HOTSPARE_ROOT/pyproject.toml"
  }
  lock_sum="$({ cat "$HOTSPARE_ROOT/requirements.lock" && install_settings; } | sha256sum | cut -d' ' -f1)" || exit 1
  if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$lock_sum" ]; then
    stage "installing Python dependencies from requirements.lock (a few minutes)" install_python || exit 1
  fi
); then
  echo "setup: incomplete; fix the problem above and run it again" >&2
  return 1 2>/dev/null || exit 1
fi

case ":$PATH:" in
  *":$HOTSPARE_ROOT/.venv/bin:"*) ;;
  *) export PATH="$HOTSPARE_ROOT/.venv/bin:$PATH" ;;
esac

# Prefect runs offline, with its own home, and quietly.
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export DO_NOT_TRACK=1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="${PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS:-120}"
export PREFECT_LOGGING_EXTRA_LOGGERS="${PREFECT_LOGGING_EXTRA_LOGGERS:-paramiko}"

# The Prefect server hotspare starts (scripts/demo.sh) requires this basic-auth string; the
# commands send it. It stays in the environment, never in argv or logs. Not set over an
# existing string or a Prefect Cloud API key (Prefect would prefer the string to the key).
if [ -z "${PREFECT_API_AUTH_STRING:-}" ] && [ -z "${PREFECT_API_KEY:-}" ] && [ -r "$HOTSPARE_HOME/prefect-api-auth" ]; then
  PREFECT_API_AUTH_STRING="$(<"$HOTSPARE_HOME/prefect-api-auth")"
  export PREFECT_API_AUTH_STRING
fi
