"""The CI gates of scripts/test.sh and .ci/run: a skipped lab test fails the run when the lab is
required, and a process the suite left running is named, ended by PID and fails the run."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_pytest_on(tmp_path: Path, body: str, require_lab: bool) -> subprocess.CompletedProcess:
    """pytest on one small test file, with this suite's conftest as a plugin."""
    (tmp_path / "test_sample.py").write_text(body)
    environment = {**os.environ, "PYTHONPATH": f"{ROOT}/tests{os.pathsep}{ROOT}", "HOTSPARE_HOME": str(tmp_path / "home")}
    environment.pop("PYTEST_XDIST_WORKER", None)
    environment["HOTSPARE_REQUIRE_LAB"] = "1" if require_lab else "0"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "conftest",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            str(tmp_path / "test_sample.py"),
        ],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


SKIPPING = """
import pytest

@pytest.mark.lab
def test_needs_the_lab():
    pytest.skip("the lab needs root (network namespaces, per-host mounts)")

def test_other():
    pytest.skip("needs chromium and poppler")
"""


def test_a_skipped_lab_test_fails_when_the_lab_is_required(tmp_path):
    required = run_pytest_on(tmp_path, SKIPPING, require_lab=True)
    assert required.returncode == 1, required.stdout
    assert "1 failed, 1 skipped" in required.stdout
    assert "HOTSPARE_REQUIRE_LAB=1 but this lab test was skipped: the lab needs root" in required.stdout
    relaxed = run_pytest_on(tmp_path, SKIPPING, require_lab=False)
    assert relaxed.returncode == 0 and "2 skipped" in relaxed.stdout, relaxed.stdout


def test_a_process_left_by_the_suite_is_named_ended_and_fails_the_run(tmp_path):
    run_id = f"check-{uuid.uuid4().hex}"
    left = subprocess.Popen(["sleep", "300"], env={**os.environ, "HOTSPARE_SUITE_RUN": run_id}, start_new_session=True)
    by_path = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(301)", str(tmp_path / "marker")], start_new_session=True
    )
    try:
        check = subprocess.run(
            [sys.executable, str(ROOT / "scripts/leftover_processes.py"), "--run-id", run_id, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert check.returncode == 1, check.stderr
        assert f"pid {left.pid}: sleep 300" in check.stderr and f"pid {by_path.pid}: {sys.executable} -c" in check.stderr
        assert left.wait(timeout=10) is not None and by_path.wait(timeout=10) is not None
        clean = subprocess.run(
            [sys.executable, str(ROOT / "scripts/leftover_processes.py"), "--run-id", run_id, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (clean.returncode, clean.stderr) == (0, "")
    finally:
        for process in (left, by_path):
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)


def test_a_unit_test_that_asks_for_the_lab_fails_with_the_fix(tmp_path):
    """tests/unit/conftest.py: a test in the fast layer that asks for the lab (here through the
    fleet) fails before the lab starts, and says where it belongs."""
    unit = tmp_path / "unit"
    unit.mkdir()
    (unit / "conftest.py").write_text((ROOT / "tests" / "unit" / "conftest.py").read_text())
    (unit / "test_sample.py").write_text(
        "def test_reads_the_fleet(fleet):\n    assert fleet\n\ndef test_pure():\n    assert 1 + 1 == 2\n"
    )
    environment = {**os.environ, "PYTHONPATH": f"{ROOT}/tests{os.pathsep}{ROOT}", "HOTSPARE_HOME": str(tmp_path / "home")}
    environment.pop("PYTEST_XDIST_WORKER", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(unit)],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1, result.stdout
    assert "1 passed" in result.stdout and "1 error" in result.stdout, result.stdout
    assert "test_reads_the_fleet uses lab, lab_env, fleet, prefect_api, which needs the lab or a server" in result.stdout
    assert "move it to tests/" in result.stdout
