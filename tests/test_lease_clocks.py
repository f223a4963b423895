"""Leases decided by the inventory's clock: holders whose own clocks are 20 minutes apart still
exclude each other.

The other holder is a real process whose whole clock is shifted (libfaketime preloaded, as a
worker machine whose clock drifted), on the session's PostgreSQL inventory (the database several
machines share). With each process judging expiry by its own clock, the fast one would take a
live lease over at once and the slow one would write leases that had already expired.
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest

from hotspare.inventory import locks
from hotspare.inventory.clock import database_now
from hotspare.inventory.db import session
from hotspare.inventory.models import ServiceRow

from lab_helpers import poll
from postgres_helpers import fresh_database

SERVICE = "shop"
LEASE_SECONDS = 3
SKEW_MINUTES = 20

HOLDER = """
import datetime, signal, sys
from hotspare.inventory import locks
print("clock", datetime.datetime.now(datetime.timezone.utc).timestamp(), flush=True)
mode, holder = sys.argv[1], sys.argv[2]
if mode == "try":
    try:
        lease = locks.acquire("shop", holder)
    except locks.ServiceBusy as error:
        print("busy", error, flush=True)
    else:
        print("acquired", lease.token, flush=True)
else:
    with locks.service_lock("shop", holder) as lease:
        lease.check("show it holds")
        print("held", lease.token, flush=True)
        signal.pause()  # until the test kills this process
"""


def _faketime_library() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    assert found, "libfaketime is not installed (Debian package libfaketime; scripts/setup.sh installs it)"
    return found[0]


@pytest.fixture
def inventory(monkeypatch, request):
    """A fresh PostgreSQL inventory (one per test: engines are kept per URL) holding one service,
    with a short lease."""
    url = fresh_database(f"lease_clocks_{abs(hash(request.node.name)) % 10**8}")
    monkeypatch.setenv("HOTSPARE_DB_URL", url)
    monkeypatch.setenv("HOTSPARE_LEASE_SECONDS", str(LEASE_SECONDS))
    with session() as db:
        db.add(
            ServiceRow(name=SERVICE, spec={}, planned_production="p", planned_mirror="m", active_server="p", mirror_server="m")
        )
    return url


def _skewed(mode: str, holder: str, minutes: int) -> subprocess.Popen:
    """A lease holder in a process whose clock is ``minutes`` off (monotonic time left alone)."""
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "LD_PRELOAD": _faketime_library(),
        "FAKETIME": f"{minutes:+d}m",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    return subprocess.Popen([sys.executable, "-c", HOLDER, mode, holder], stdout=subprocess.PIPE, text=True, env=environment)


def _answer(process: subprocess.Popen) -> list[str]:
    """The process's clock line checked to be skewed, then its next line (bounded by the caller's timeout)."""
    clock = process.stdout.readline().split()
    assert clock and clock[0] == "clock", clock
    assert abs(float(clock[1]) - time.time()) > (SKEW_MINUTES - 1) * 60, "the holder's clock is not skewed"
    return process.stdout.readline().split(maxsplit=1)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def test_leases_read_no_process_clock(inventory):
    """The database's time is the one the leases use (within a second of this machine's)."""
    assert abs((database_now() - datetime.now(timezone.utc)).total_seconds()) < 1


@pytest.mark.parametrize("minutes", [SKEW_MINUTES, -SKEW_MINUTES])
def test_a_holder_with_a_skewed_clock_neither_steals_nor_loses_a_lease(inventory, minutes):
    # A live lease held (and renewed) here is not taken over by a process whose clock says it long expired
    with locks.service_lock(SERVICE, "replicate:here") as mine:
        other = _skewed("try", "backup:skewed", minutes)
        try:
            answer = _answer(other)
            assert answer[0] == "busy" and "replicate:here holds its lock" in answer[1], answer
        finally:
            _stop(other)
        mine.check("promote")

    # The skewed process holds (it sees its own lease live) and keeps it through renewals
    holder = _skewed("hold", "replicate:skewed", minutes)
    try:
        answer = _answer(holder)
        assert answer[0] == "held", answer
        deadline = time.monotonic() + 2 * LEASE_SECONDS  # two leases: only renewal keeps it
        while time.monotonic() < deadline:
            with pytest.raises(locks.ServiceBusy, match="replicate:skewed holds its lock"):
                locks.acquire(SERVICE, "backup:here")
            time.sleep(0.5)
        # killed, its lease ends by the database's clock: free within one lease, not 20 minutes
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        started = time.monotonic()
        lease = poll(lambda: _try_acquire("backup:here"), 4 * LEASE_SECONDS, "the dead holder's lease to end")
        assert time.monotonic() - started <= LEASE_SECONDS + 1.5
        assert lease.token > int(answer[1])
        locks.release(lease)
    finally:
        _stop(holder)


def _try_acquire(holder: str):
    try:
        return locks.acquire(SERVICE, holder)
    except locks.ServiceBusy:
        return None
