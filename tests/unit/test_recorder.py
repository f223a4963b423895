"""Bookkeeping never masks a run's outcome: a failing recorder is logged, the others still run,
and the run's own exception is the one the operator sees."""

from __future__ import annotations

import logging

import pytest

from hotspare.inventory.runs import record_outcome


class InventoryDown(Exception):
    pass


def run_that_fails_and_whose_bookkeeping_fails(recorded: list[str]):
    try:
        raise RuntimeError("rsync: the mirror's disk is full")
    finally:

        def broken_row():
            raise InventoryDown("database is locked")

        record_outcome(broken_row, lambda: recorded.append("artifact"))


def test_the_runs_own_error_survives_a_failing_recorder(caplog):
    recorded: list[str] = []
    with caplog.at_level(logging.ERROR), pytest.raises(RuntimeError, match="disk is full"):
        run_that_fails_and_whose_bookkeeping_fails(recorded)
    assert recorded == ["artifact"]  # the next recorder still ran
    assert "could not record the run's outcome (InventoryDown: database is locked)" in caplog.text
