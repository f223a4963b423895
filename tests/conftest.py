"""Shared fixtures: one real lab and one real Prefect API per test session.

The lab (OpenSSH hosts in network namespaces, BIND, SMTP) is started once at slot 1 (or
``HOTSPARE_TEST_SLOT``, so two suites can run side by side) and never collides with a demo lab
at slot 0. The Prefect API is ``prefect_test_harness``, behind basic authentication. Tests that
change the lab (fail a host, fail over a service) restore it or use ``fresh_lab_state``.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from pathlib import Path

import pytest

# HOTSPARE_TEST_DB=postgresql: the session inventory on a PostgreSQL the session starts.
pytest_plugins = ("postgres_helpers",)
# Lab tests reuse helpers and tests of the fast layer (test_locks on PostgreSQL, the escalation
# webhook): tests/unit is importable from every test, whichever runs first.
sys.path.insert(1, str(Path(__file__).resolve().parent / "unit"))

# With pytest-xdist (scripts/test.sh runs the whole suite in two processes) each process is a
# session of its own: its own home (inventory, keys), Prefect home, Prefect API and lab slot.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
WORKER_INDEX = int(WORKER[2:]) if WORKER.startswith("gw") and WORKER[2:].isdigit() else 0
# The home scripts/test.sh made for this run (it names the run: HOTSPARE_SUITE_RUN), else a new one:
# a pytest started by hand never writes into the HOTSPARE_HOME of the shell it runs in (an
# operator's inventory, or another run's leftovers that tests counting records would trip on).
SUITE_HOME = os.environ.get("HOTSPARE_HOME") if os.environ.get("HOTSPARE_SUITE_RUN") else None
BASE_HOME = Path(SUITE_HOME or tempfile.mkdtemp(prefix="hotspare-test."))
TEST_HOME = BASE_HOME / WORKER if WORKER else BASE_HOME
TEST_HOME.mkdir(mode=0o700, parents=True, exist_ok=True)
os.environ["HOTSPARE_HOME"] = str(TEST_HOME)
if WORKER:
    os.environ["PREFECT_HOME"] = str(TEST_HOME / "prefect")
os.environ.setdefault("PREFECT_HOME", str(TEST_HOME / "prefect"))
# The session lab's slot: HOTSPARE_TEST_SLOT (default 1) for the first process, the next
# slots for the others.
TEST_SLOT = int(os.environ.get("HOTSPARE_TEST_SLOT", "1")) + WORKER_INDEX
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Faster task-run bookkeeping on the harness's SQLite server (prefect-facts.md).
os.environ.setdefault("PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE", "50")
os.environ.setdefault("PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE", "50")
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "paramiko")
# The session's Prefect API requires authentication, as the server hotspare starts does: the
# harness server reads PREFECT_SERVER_API_AUTH_STRING from this environment, every client
# (this process and the ones tests start) sends PREFECT_API_AUTH_STRING. A fresh string per
# session replaces any exported by scripts/setup.sh; set before Prefect is imported.
SESSION_API_AUTH_STRING = "hotspare-test:" + secrets.token_urlsafe(24)
os.environ["PREFECT_SERVER_API_AUTH_STRING"] = SESSION_API_AUTH_STRING
os.environ["PREFECT_API_AUTH_STRING"] = SESSION_API_AUTH_STRING
os.environ.pop("PREFECT_API_KEY", None)


@pytest.fixture(scope="session")
def prefect_api():
    """A real Prefect API (test harness server) for the whole session, behind authentication."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_SERVER_API_AUTH_STRING, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    # Also as settings, in case Prefect was imported before this module set the environment.
    auth = {PREFECT_SERVER_API_AUTH_STRING: SESSION_API_AUTH_STRING, PREFECT_API_AUTH_STRING: SESSION_API_AUTH_STRING}
    with temporary_settings(updates=auth), prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def lab():
    """The lab, up for the whole session at slot 1, down at the end."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces, per-host mounts)")
    from hotspare.lab import Lab

    instance = Lab(TEST_HOME / "lab", slot=TEST_SLOT)
    instance.up()
    yield instance
    instance.down()


@pytest.fixture(scope="session")
def lab_env(lab) -> dict:
    return lab.env()


@pytest.fixture(scope="session")
def fleet(lab, lab_env, prefect_api):
    """The lab's fleet loaded into the session inventory, with its blocks saved in Prefect."""
    from hotspare.access import loaded_fleet
    from hotspare.cli import main

    lab.register_blocks()
    assert main(["fleet", "load", lab_env["fleet_file"]]) == 0
    return loaded_fleet()


@pytest.fixture(scope="module", autouse=True)
def starting_layout(request):
    """A module on the session lab starts from the lab's starting layout. A module before it in this
    process whose way back failed (its teardown reported that as an error) left services elsewhere:
    they are put back the quick way first, with a warning naming them, so one failure is reported
    once instead of failing every module after it."""
    if "fleet" not in request.fixturenames:
        yield
        return
    import warnings

    from lab_layout import restore_starting_layout, starting_layout_differs

    request.getfixturevalue("fleet")
    lab_env = request.getfixturevalue("lab_env")
    differing = starting_layout_differs(lab_env)
    if differing:
        warnings.warn(
            f"{request.module.__name__} found the lab moved ({'; '.join(differing)}): put back the quick way", stacklevel=2
        )
        restore_starting_layout(request.getfixturevalue("lab"), lab_env)
    yield


@pytest.hookimpl(trylast=True)  # after tests/unit/conftest.py has bounded its own tests
def pytest_collection_modifyitems(config, items) -> None:
    """Every test that uses the session lab (directly or through another fixture) is a ``lab``
    test, so ``-m "not lab"`` runs exactly the tests that need no root, no namespaces, no
    daemons. Tests that build labs of their own carry the marker explicitly. Every test without
    a bound of its own gets LAB_TEST_TIMEOUT."""
    bound = config.getoption("timeout", None) is None
    for item in items:
        if "lab" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.lab)
        if bound and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(LAB_TEST_TIMEOUT))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With HOTSPARE_REQUIRE_LAB=1 (CI: ``.ci/run``), a lab test that skips fails instead: a run
    without root, namespaces or PostgreSQL must not pass as green."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("HOTSPARE_REQUIRE_LAB") != "1" or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr).removeprefix("Skipped: ")
    if item.get_closest_marker("lab") is not None or any(word in reason for word in ("root", "lab", "PostgreSQL")):
        report.outcome = "failed"
        report.longrepr = f"HOTSPARE_REQUIRE_LAB=1 but this lab test was skipped: {reason}"


# No test runs unbounded (pytest-timeout): a lab test may take 15 minutes (a failover or a rebuild
# on a loaded machine); tests/unit/conftest.py gives the fast layer 60 s. --timeout overrides both.
LAB_TEST_TIMEOUT = 900


def pytest_configure(config) -> None:
    """The fifteen slowest tests are printed after every run, unless --durations says otherwise."""
    if config.option.durations is None:
        config.option.durations = 15
