"""Runs and their timed steps: the record behind RTO numbers and run summaries."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from hotspare.inventory.db import session
from hotspare.inventory.models import RunRow, StepRow, utcnow

log = logging.getLogger(__name__)


def current_operator() -> str:
    """Who is running hotspare: ``HOTSPARE_OPERATOR`` (a person's name, for shared service
    accounts and workers), else the name of the API login in ``PREFECT_API_AUTH_STRING`` (a
    person's own credentials for the API proxy; not a shared ``hotspare…`` string),
    else the login name; recorded on every run."""
    import getpass
    import os

    named = os.environ.get("HOTSPARE_OPERATOR", "").strip()
    if named:
        return named
    # behind the API proxy a person's own login (name:password) is who runs the command
    login, separator, _password = os.environ.get("PREFECT_API_AUTH_STRING", "").partition(":")
    if separator and login.strip() and not login.strip().startswith("hotspare"):
        return login.strip()
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def start_run(kind: str, service: str, flow_run_id: str | None = None) -> int:
    with session() as db:
        run = RunRow(kind=kind, service=service, flow_run_id=flow_run_id, operator=current_operator())
        db.add(run)
        db.flush()
        return run.id


def finish_run(run_id: int, outcome: str, summary: str, details: dict | None = None) -> None:
    with session() as db:
        run = db.get(RunRow, run_id)
        run.ended_at, run.outcome, run.summary = utcnow(), outcome, summary
        if details is not None:
            run.details = details
        kind, service = run.kind, run.service
    if outcome == "failed":  # a failed failover, rebuild or replication opens an incident (pages)
        from hotspare.inventory.incidents import open_for_failed_run

        record_outcome(lambda: open_for_failed_run(run_id, kind, service, summary))


@contextmanager
def step(run_id: int, name: str) -> Iterator[StepRow]:
    """Time one step; its outcome is ``ok`` or the error's first line."""
    with session() as db:
        row = StepRow(run_id=run_id, name=name)
        db.add(row)
        db.flush()
        step_id = row.id
    outcome, detail = "ok", ""
    try:
        yield row
        detail = row.detail
    except BaseException as error:
        outcome, detail = "failed", str(error).splitlines()[0][:500] if str(error) else type(error).__name__
        raise
    finally:
        with session() as db:
            stored = db.get(StepRow, step_id)
            stored.ended_at, stored.outcome, stored.detail = utcnow(), outcome, detail


def step_timings(run_id: int) -> list[dict]:
    """Steps of a run in order with their durations in seconds."""
    from sqlmodel import select

    with session() as db:
        rows = db.exec(select(StepRow).where(StepRow.run_id == run_id).order_by(StepRow.id)).all()
    return [
        {
            "step": row.name,
            "seconds": round((row.ended_at - row.started_at).total_seconds(), 3) if row.ended_at else None,
            "outcome": row.outcome,
            "detail": row.detail,
        }
        for row in rows
    ]


def record_outcome(*recorders: Callable[[], None]) -> None:
    """Run a run's bookkeeping (its inventory row, its summary artifact) at the end.

    Called from ``finally``: a failure of one recorder is logged and the next still runs, and
    none ever replaces the run's own result or exception, which the operator needs to see.
    """
    for recorder in recorders:
        try:
            recorder()
        except Exception as error:
            log.error("could not record the run's outcome (%s: %s); the run's own result stands",
                      type(error).__name__, error)
