"""``. scripts/setup.sh`` from an operator's shell keeps that shell's options and the shell itself.

Sourced into an interactive shell, a script that runs ``set -e`` would make the operator's next
failing command close the terminal. These tests source it into a real bash and read ``$-``
and ``set -o`` afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Prints the options before and after sourcing, the return status, and proves the shell lives on.
PROBE = """
set +e +u +o pipefail
before="$- $(set -o | grep -E '^(errexit|nounset|pipefail)' | tr -s ' \\t' ' ' | tr '\\n' ',')"
. "$SETUP_SCRIPT"
status=$?
after="$- $(set -o | grep -E '^(errexit|nounset|pipefail)' | tr -s ' \\t' ' ' | tr '\\n' ',')"
false
echo "status=$status"
echo "before=$before"
echo "after=$after"
echo "path_entries=$(tr ':' '\\n' <<<"$PATH" | grep -c "/.venv/bin$")"
"""


def _source(setup_script: Path, home: Path, twice: bool = False) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "PREFECT_HOME"}
    environment.update(SETUP_SCRIPT=str(setup_script), HOTSPARE_HOME=str(home))
    script = PROBE.replace('. "$SETUP_SCRIPT"', '. "$SETUP_SCRIPT"; . "$SETUP_SCRIPT"') if twice else PROBE
    return subprocess.run(["bash", "-c", script], env=environment, capture_output=True, text=True, timeout=120, check=False)


def _lines(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def test_sourcing_setup_keeps_the_callers_options_and_says_nothing_when_all_is_installed(tmp_path):
    sourced = _source(ROOT / "scripts" / "setup.sh", tmp_path / "home", twice=True)
    result = _lines(sourced.stdout)
    assert result["status"] == "0", sourced.stderr
    assert result["after"] == result["before"]
    assert "errexit off" in result["before"] and "nounset off" in result["before"]
    assert result["path_entries"] == "1"  # sourcing twice does not grow PATH
    assert sourced.stdout.count("setup:") == 0 and sourced.stderr == ""
    assert oct((tmp_path / "home").stat().st_mode & 0o777) == "0o700"


def test_a_failed_install_returns_an_error_and_leaves_the_shell_running(tmp_path):
    # A copy of the project whose virtual environment cannot be created (.venv is a file).
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup.sh", project / "scripts" / "setup.sh")
    shutil.copy(ROOT / "requirements.lock", project / "requirements.lock")
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")
    (project / ".venv").write_text("not a folder\n")

    sourced = _source(project / "scripts" / "setup.sh", tmp_path / "home")
    result = _lines(sourced.stdout)
    assert result["status"] == "1"
    assert result["after"] == result["before"]  # and `false` afterwards did not end the shell
    assert sourced.stdout.count("setup: installing Python dependencies") == 1
    assert "setup: failed: installing Python dependencies" in sourced.stderr
    log = (tmp_path / "home" / "setup.log").read_text()
    assert "Unable to create directory" in log or "Error" in log
    assert log.strip().splitlines()[-1] in sourced.stderr  # the log's tail is shown
