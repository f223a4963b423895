"""Retry policy shared by tasks: retry transient failures only."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from prefect import get_run_logger

from hotspare.adapters.errors import is_transient


def retry_transient_only(task, task_run, state) -> bool:
    """``retry_condition_fn`` for tasks: a permanent error (host key, auth, refused) is final."""
    try:
        state.result()
    except Exception as error:  # the task's own exception, re-raised by the state
        return is_transient(error)
    return False


TRANSIENT_RETRIES = dict(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_transient_only)


def transfer_retries() -> int:
    """Retries of a long transfer after a transient failure (``HOTSPARE_TRANSFER_RETRIES``, default 2).

    Read when a flow runs, not at import, so an operator can change it per worker.
    """
    return int(os.environ.get("HOTSPARE_TRANSFER_RETRIES", "2"))


def in_flow_run(task) -> Callable:
    """``task``'s function as a plain call inside the calling flow run: no task run of its own,
    transient failures retried as the task's own retries and delays would.

    For fleet runs: a task run costs ~10 ms of the orchestrator's CPU and ~25 ms of the Prefect
    server's, four per service; a ``replicate`` over a hundred services keeps each service's
    step timings in its run record and its summary artifact instead."""
    return retrying(task.fn, task.name, task.retries, task.retry_delay_seconds)


def retrying(
    function: Callable,
    name: str,
    retries: int = TRANSIENT_RETRIES["retries"],
    delays: list[float] | float | None = TRANSIENT_RETRIES["retry_delay_seconds"],
) -> Callable:
    """``function`` with transient failures retried ``retries`` times after ``delays`` seconds
    (a list: one per retry, the last repeated), each retry a warning in the run log."""
    waits = delays if isinstance(delays, list) else [delays or 0]

    def call(*args, **kwargs):
        for attempt in range(retries + 1):
            try:
                return function(*args, **kwargs)
            except Exception as error:
                if attempt >= retries or not is_transient(error):
                    raise
                delay = waits[min(attempt, len(waits) - 1)] if waits else 0
                get_run_logger().warning(
                    "%s failed (%s); retrying in %s s (attempt %d of %d)", name, error, delay, attempt + 2, retries + 1
                )
                time.sleep(delay)

    return call


def steps(task_runs: bool) -> Callable:
    """How a runbook calls its tasks: each a task run of its own, or (``task_runs`` False, a
    fleet run) ``in_flow_run``."""
    return (lambda task: task) if task_runs else in_flow_run
