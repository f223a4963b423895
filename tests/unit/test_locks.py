"""Service leases with fencing tokens, on a real inventory database (SQLite file) and real
processes: takeover by a failover, a killed holder's lock freeing itself, renewal keeping a
live holder's lock, and the busy message an operator reads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from hotspare.inventory import locks
from hotspare.inventory.db import session
from hotspare.inventory.models import ServiceRow

from lab_helpers import poll

SERVICE = "shop"


@pytest.fixture
def inventory(tmp_path, monkeypatch):
    """A fresh inventory holding one service, with a short lease for the test."""
    url = f"sqlite:///{tmp_path / 'inventory.db'}"
    monkeypatch.setenv("HOTSPARE_DB_URL", url)
    monkeypatch.setenv("HOTSPARE_LEASE_SECONDS", "2")
    with session() as db:
        db.add(
            ServiceRow(name=SERVICE, spec={}, planned_production="p", planned_mirror="m", active_server="p", mirror_server="m")
        )
    return url


def test_each_acquisition_gets_a_higher_token_and_release_frees(inventory):
    first = locks.acquire(SERVICE, "replicate:one")
    locks.release(first)
    second = locks.acquire(SERVICE, "replicate:two")
    assert second.token == first.token + 1
    second.check("promote")  # still ours
    locks.release(second)
    assert locks.holder_of(SERVICE) is None


def test_busy_names_the_holder_since_when_and_what_to_do(inventory):
    lease = locks.acquire(SERVICE, "backup:run-7")
    with pytest.raises(locks.ServiceBusy) as caught:
        locks.acquire(SERVICE, "replicate:run-8")
    message = str(caught.value)
    assert "backup:run-7 holds its lock since" in message and "UTC" in message
    assert "hotspare unlock shop --holder backup:run-7" in message
    assert caught.value.holder == "backup:run-7" and caught.value.since is not None
    locks.release(lease)


def test_a_failover_takes_over_routine_work_whose_next_step_then_refuses(inventory):
    replication = locks.acquire(SERVICE, "replicate:hung")
    failover = locks.acquire(SERVICE, "failover:now", preempt=locks.PREEMPTIBLE)
    assert failover.token > replication.token
    with pytest.raises(locks.LeaseLost, match="failover:now holds it now.*not going to promote copy X"):
        replication.check("promote copy X")
    assert replication.renew() is False and replication.lost
    # the taken-over run's release does not free the failover's lock
    locks.release(replication)
    assert locks.holder_of(SERVICE) == "failover:now"
    # a failover is not routine work: another failover without resume does not take it over
    with pytest.raises(locks.ServiceBusy):
        locks.acquire(SERVICE, "failover:other", preempt=locks.PREEMPTIBLE)
    locks.release(failover)


def test_renewal_keeps_a_live_holders_lock_past_its_lease(inventory):
    with locks.service_lock(SERVICE, "replicate:long") as lease:
        time.sleep(float(os.environ["HOTSPARE_LEASE_SECONDS"]) * 2)  # two leases: only renewal keeps it
        lease.check("prune")
        with pytest.raises(locks.ServiceBusy):
            locks.acquire(SERVICE, "backup:waiting")
    assert locks.holder_of(SERVICE) is None


HOLD = """
import signal
from hotspare.inventory import locks
with locks.service_lock("shop", "replicate:doomed"):
    print("held", flush=True)
    signal.pause()  # until the test kills this process
"""


def test_a_killed_holders_lock_frees_itself_within_the_lease(inventory):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(locks.ServiceBusy):
            locks.acquire(SERVICE, "backup:next")
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        started = time.monotonic()
        lease = poll(lambda: _try_acquire("backup:next"), 10, "the dead run's lock to free itself")
        assert time.monotonic() - started <= 2 + 1  # the lease, plus polling slack
        assert lease.holder == "backup:next"
    finally:
        if holder.poll() is None:
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait(timeout=10)


def _try_acquire(holder: str):
    try:
        return locks.acquire(SERVICE, holder)
    except locks.ServiceBusy:
        return None


def test_unlock_needs_the_holders_name(inventory):
    locks.acquire(SERVICE, "rebuild:stuck")
    assert locks.unlock(SERVICE, "rebuild:other") is False
    assert locks.holder_of(SERVICE) == "rebuild:stuck"
    assert locks.unlock(SERVICE, "rebuild:stuck") is True
    assert locks.holder_of(SERVICE) is None


@pytest.mark.parametrize(
    "kind, state, go",
    [
        ("replicate", "protected", True),
        ("replicate", "failing-over", False),
        ("replicate", "failed-over", False),
        ("replicate", "rebuilding", False),
        ("replicate", "reprotecting", False),
        ("verify", "failing-over", False),
        ("backup", "failed-over", True),
        ("backup", "failing-over", False),
        ("backup", "rebuilding", False),
    ],
)
def test_routine_runs_refuse_while_the_service_is_moving(kind, state, go):
    from hotspare.planning.coordination import judge_routine_run

    decision = judge_routine_run(kind, "shop", state)
    assert decision.go is go
    if not go:
        assert f"refusing to {kind} shop: it is {state}" in decision.reason and "Nothing was touched" in decision.reason
