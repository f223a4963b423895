"""Continuous watching: scheduled health runs overlap, hand over and never check at once.

Two health runs against the lab, the second started while the first still checks (as the
schedule does when each run checks longer than the period): the second's first round comes after
the first's last, within a round's interval of it; a one-off check (``rounds``) takes no turn.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from lab_helpers import wait_for

pytestmark = pytest.mark.lab

INTERVAL = 1.0


def test_an_overlapping_scheduled_run_waits_for_the_turn_and_leaves_no_gap(fleet):
    from flows.health import health
    from hotspare.inventory import watch
    from hotspare.inventory.models import utcnow

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(health, run_seconds=8, interval_seconds=INTERVAL, return_state=True)
        wait_for("the first run to take the watch", lambda: (row := _holder()) and row.holder.startswith("health:"), 60)
        holder_before = _holder().holder
        second = pool.submit(health, run_seconds=14, interval_seconds=INTERVAL, return_state=True)
        first_state, second_state = first.result(timeout=120), second.result(timeout=120)
    one, two = first_state.result(), second_state.result()
    assert one["rounds"] >= 2 and two["rounds"] >= 2, (one, two)
    first_run, second_run = str(first_state.state_details.flow_run_id), str(second_state.state_details.flow_run_id)
    assert holder_before == f"health:{first_run}"
    assert one["checked"][1] <= two["checked"][0]  # never at once
    assert two["checked"][0] - one["checked"][1] < INTERVAL + 2.0  # and no gap longer than a round
    assert _holder().holder == f"health:{second_run}"  # released at its end: the next need not wait
    taken, _holder_now, _until = watch.claim("health", "a later run", utcnow() + timedelta(seconds=120))
    assert taken
    # A one-off check (``rounds``) is no scheduled run: it checks at once, beside the holder.
    started = time.monotonic()
    assert health(rounds=1, interval_seconds=INTERVAL)["rounds"] == 1
    assert time.monotonic() - started < 60
    watch.release("health", "a later run")


def _holder():
    from hotspare.inventory import session
    from hotspare.inventory.watch import WatchRow

    with session() as db:
        row = db.get(WatchRow, "health")
        return row.model_copy() if row else None
