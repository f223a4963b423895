"""Runs and their timed steps: the record behind RTO numbers and run summaries."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from hotspare.inventory.db import InventoryUnreachable, session
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
    """A new run row; first, outcomes earlier runs kept while the inventory was unreachable."""
    _write_late_outcomes()
    with session() as db:
        run = RunRow(kind=kind, service=service, flow_run_id=flow_run_id, operator=current_operator())
        db.add(run)
        db.flush()
        return run.id


def finish_run(run_id: int, outcome: str, summary: str, details: dict | None = None) -> None:
    """Close the run's row. With the inventory unreachable the outcome is kept locally and
    written by the next run that starts (``late_outcomes``); the error still reaches the caller."""
    try:
        with session() as db:
            run = db.get(RunRow, run_id)
            run.ended_at, run.outcome, run.summary = utcnow(), outcome, summary
            if details is not None:
                run.details = details
            kind, service = run.kind, run.service
    except InventoryUnreachable:
        from hotspare.inventory import late_outcomes

        late_outcomes.keep(run_id, finish={"outcome": outcome, "summary": summary, "details": details})
        log.warning("run %d's outcome (%s) is kept on this machine until the inventory answers again", run_id, outcome)
        raise
    if outcome == "failed":  # a failed failover, rebuild or replication opens an incident (pages)
        from hotspare.inventory.incidents import open_for_failed_run

        record_outcome(lambda: open_for_failed_run(run_id, kind, service, summary))


def close_interrupted(run_id: int, reason: str) -> bool:
    """Mark a run whose process is gone "interrupted" with the reason (and its open steps), if
    its row still says running; True when it did."""
    with session() as db:
        run = db.get(RunRow, run_id)
        if run is None or run.outcome != "running":
            return False
        run.ended_at, run.outcome, run.summary = utcnow(), "interrupted", reason
        close_open_steps(db, run_id, run.ended_at, reason)
    log.warning("run %d closed as interrupted: %s", run_id, reason)
    return True


def close_open_steps(db, run_id: int, at, detail: str) -> None:
    """Steps of a run that never recorded their end: "interrupted" at ``at``, with why."""
    from sqlmodel import select

    for open_step in db.exec(select(StepRow).where(StepRow.run_id == run_id, StepRow.outcome == "running")):
        open_step.ended_at, open_step.outcome, open_step.detail = at, "interrupted", detail[:500]


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
        try:
            with session() as db:
                stored = db.get(StepRow, step_id)
                stored.ended_at, stored.outcome, stored.detail = utcnow(), outcome, detail
        except InventoryUnreachable as error:  # never hides the step's own outcome; closed when it answers
            log.error("could not record the end of step %r (%s): %s", name, outcome, error)
            if outcome == "ok":
                raise


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


def _write_late_outcomes() -> None:
    """Bookkeeping for earlier runs: its failure never stops this run from starting."""
    from hotspare.inventory import late_outcomes

    try:
        late_outcomes.write_kept()
    except Exception as error:  # noqa: BLE001  (a later start tries again; the file stays)
        log.error("could not write the outcomes kept while the inventory was unreachable: %s", error)


def record_outcome(*recorders: Callable[[], None]) -> None:
    """Run a run's bookkeeping (its inventory row, its summary artifact) at the end.

    Called from ``finally``: a failure of one recorder is logged and the next still runs, and
    none ever replaces the run's own result or exception, which the operator needs to see.
    """
    for recorder in recorders:
        try:
            recorder()
        except Exception as error:
            log.error("could not record the run's outcome (%s: %s); the run's own result stands", type(error).__name__, error)
