"""Steps called inside a flow run without task runs of their own keep the tasks' retry rules."""

from __future__ import annotations

import pytest
from prefect import flow, task

from hotspare.adapters.errors import PermanentError, TransientError
from tasks.retry import in_flow_run, retry_transient_only


def test_a_plain_step_retries_transient_failures_and_never_permanent_ones(prefect_api):
    attempts = []

    @task(retries=2, retry_delay_seconds=[0, 0], retry_condition_fn=retry_transient_only)
    def flaky() -> str:
        attempts.append("flaky")
        if attempts.count("flaky") < 3:
            raise TransientError("connection dropped")
        return "copied"

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_transient_only)
    def refused() -> None:
        attempts.append("refused")
        raise PermanentError("disk full")

    @flow
    def runbook() -> str:
        result = in_flow_run(flaky)()
        with pytest.raises(PermanentError):
            in_flow_run(refused)()
        return result

    assert runbook() == "copied"
    assert attempts.count("flaky") == 3 and attempts.count("refused") == 1
