"""What a replication run over several services shows in the Prefect UI while it works and after.

- one task run per service (``replicate <service>``), so the run's graph and task list show
  each service with its own state and duration (the steps inside stay plain calls when several
  services share the run: a task run per step would cost more CPU than the copies);
- a progress artifact (services done / services asked), updated as each one ends;
- a table artifact of outcomes (``replicate-outcomes``): service, outcome, copy, files and bytes
  moved, seconds, and the reason of a failure or skip;
- the run's end: Failed naming the failed services (as before), a Completed state named
  ``Skipped`` naming the services another run still held, plain Completed only when every
  service was replicated.

Bookkeeping never masks the outcome: a progress or table artifact that cannot be written is a
warning in the log.
"""

from __future__ import annotations

import threading
import time

from prefect import get_run_logger, task
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed

from hotspare.inventory import locks

OUTCOMES_KEY = "replicate-outcomes"
SKIPPED = "Skipped"


def replicate_in_task_run(service: str, force: bool, task_runs: bool) -> dict:
    """``replicate_one`` for one service as its own task run: its result, or its exception."""
    return _replicate_task(service, force, task_runs, return_state=True).result()


@task(name="replicate-service-step", task_run_name="replicate {service}", cache_policy=NO_CACHE)
def _replicate_task(service: str, force: bool, task_runs: bool):
    """The task run; a service another run holds ends it ``Skipped`` (not Failed), naming that run."""
    from flows.replicate import replicate_one  # that module uses this one

    started = time.monotonic()
    try:
        result = replicate_one(service, force, None, task_runs)
    except locks.ServiceBusy as busy:
        result = {"service": service, "outcome": "skipped", "reason": str(busy), "holder": busy.holder}
        return Completed(name=SKIPPED, message=f"{service}: {busy}", data=result | _seconds(started))
    return result | _seconds(started)


def _seconds(started: float) -> dict:
    return {"seconds": round(time.monotonic() - started, 1)}


class Progress:
    """The run's progress artifact: services done out of services asked (thread-safe).

    Written at most once every ``interval`` seconds, and always when the last service ends: a
    hundred small services end several a second, and each write is a request the Prefect server
    (on the same cores as the copies) answers, while the UI's bar needs no finer steps."""

    def __init__(self, total: int, interval: float = 2.0):
        self.total, self.done, self.lock = max(total, 1), 0, threading.Lock()
        self.interval, self.written_at = interval, time.monotonic()
        self.artifact_id = _quietly(
            lambda: create_progress_artifact(0.0, description=f"Replication: services done out of {total}")
        )

    def one_done(self) -> None:
        with self.lock:
            self.done += 1
            percent = 100.0 * self.done / self.total
            now = time.monotonic()
            if self.done < self.total and now - self.written_at < self.interval:
                return
            self.written_at = now
        if self.artifact_id is not None:
            _quietly(lambda: update_progress_artifact(self.artifact_id, percent))


def publish_outcomes(results: dict[str, dict]) -> None:
    """The table of outcomes, one row per service, in the order they were asked."""
    rows = []
    for service, result in results.items():
        transfer = result.get("transfer") or {}
        rows.append(
            {
                "service": service,
                "outcome": result.get("outcome", "?"),
                "copy": result.get("copy_id", "-"),
                "files moved": transfer.get("files_transferred", "-"),
                "bytes moved": transfer.get("bytes_transferred", "-"),
                "seconds": result.get("seconds", "-"),
                "reason": (result.get("error") or result.get("reason") or "-")[:300],
            }
        )
    _quietly(lambda: create_table_artifact(rows, key=OUTCOMES_KEY, description="Replication: outcome per service"))


def final_state(results: dict[str, dict]):
    """``results`` as they are when nothing failed, or a Completed state named ``Skipped``
    naming the services left to the next run (the caller raises for failures)."""
    skipped = [name for name, result in results.items() if result.get("outcome") == "skipped"]
    if not skipped:
        return results
    return Completed(
        name=SKIPPED,
        data=results,
        message=f"{len(skipped)} of {len(results)} service(s) skipped, another run holds them: "
        f"{', '.join(sorted(skipped))}; the next scheduled run replicates them",
    )


def _quietly(write):
    try:
        return write()
    except Exception as error:  # noqa: BLE001  (an artifact is a side channel, never the outcome)
        get_run_logger().warning("could not write the replication progress: %s", error)
        return None
