"""The failover's Prefect slot: one left by a run that is gone is taken over, not waited out."""

from __future__ import annotations

import logging
import time

from prefect import flow


def test_a_slot_left_by_a_gone_run_is_taken_over_within_seconds(prefect_api, caplog):
    from prefect.client.orchestration import get_client
    from prefect.concurrency._sync import acquire_concurrency_slots_with_lease

    from flows.failover import SLOT_LEASE_SECONDS, SLOT_WAIT_SECONDS, _prefect_slot

    service = f"slot-test-{time.monotonic_ns()}"
    name = f"hotspare-failover-{service}"
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, limit=1)
    # a run that took the slot and died: its lease is never renewed nor released
    acquire_concurrency_slots_with_lease([name], 1, lease_duration=SLOT_LEASE_SECONDS, strict=True)

    @flow
    def next_failover() -> float:
        started = time.monotonic()
        with _prefect_slot(service, takeover=False):
            with get_client(sync_client=True) as client:
                held = client.read_global_concurrency_limit_by_name(name).active_slots
            assert held == 1  # this run's own, the dead run's is gone
        return time.monotonic() - started

    with caplog.at_level(logging.WARNING):
        waited = next_failover()
    assert waited < SLOT_WAIT_SECONDS + 10 < SLOT_LEASE_SECONDS  # never the dead run's minute
    assert any("taken over" in record.getMessage() and name in record.getMessage() for record in caplog.records)
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(name).active_slots == 0  # released at the end
