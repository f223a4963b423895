#!/usr/bin/env bash
# The static gates, run by .ci/run before the tests (and by hand: `bash scripts/check.sh`):
#   ruff check  lint rules of pyproject.toml [tool.ruff.lint]
#   mypy        types; strict for hotspare/planning, hotspare/fleet, hotspare/adapters
#               ([tool.mypy] in pyproject.toml)
#   ruff format --check  the tree's format and import order (`ruff check --select I --fix . &&
#               ruff format .` fixes them; RUFF_FORMAT_CHECK=0 skips the format check)
# Each gate prints what it found; the script fails when any of them does. Quick: seconds with
# mypy's cache (.mypy_cache), about a minute without.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUFF_FORMAT_CHECK="${RUFF_FORMAT_CHECK:-1}"
python="${HOTSPARE_PYTHON:-python}"
[ -x .venv/bin/python ] && python="${HOTSPARE_PYTHON:-.venv/bin/python}"
status=0
gate() {  # gate TITLE COMMAND...: run one gate, say which failed.
  local title="$1"
  shift
  if ! "$@"; then
    echo "check: $title failed (command: $*)" >&2
    status=1
  fi
}
if [ "$RUFF_FORMAT_CHECK" = "1" ]; then
  gate "ruff lint" "$python" -m ruff check .
  gate "ruff format" "$python" -m ruff format --check .
else
  gate "ruff lint" "$python" -m ruff check --extend-ignore I001 .
fi
gate "mypy" "$python" -m mypy
exit "$status"
