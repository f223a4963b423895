"""Retry policy shared by tasks: retry transient failures only."""

from __future__ import annotations

import os

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
