"""Outcomes a run could not record because the inventory was unreachable, written when it answers.

A run that ends while its database is down (a stopped PostgreSQL, a cut link) cannot close its
run row, its open steps, or the "failing-over" mark of a switchover it undid; left alone they
would say "running" forever. The run keeps what it knows in a private file under
``$HOTSPARE_HOME/late-outcomes/<inventory>/`` (one per run, JSON), and the next run started
through this home against the same inventory (``runs.start_run``) writes them first, each a
logged sentence. Only a row still open is changed: a run row another run already closed, or a
service a later run took over (its failover record names another run), stays as it is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from datetime import datetime
from pathlib import Path

from hotspare.inventory.db import database_url, session
from hotspare.inventory.models import RunRow, ServiceRow, as_utc, utcnow
from hotspare.inventory.service_states import Event, ServiceState, move
from hotspare.local_secrets import private_home
from hotspare.settings import hotspare_home

log = logging.getLogger(__name__)


def folder() -> Path:
    """This inventory's folder of kept outcomes (the URL's digest: another inventory never gets them)."""
    digest = hashlib.sha256(database_url().encode()).hexdigest()[:16]
    return hotspare_home() / "late-outcomes" / digest


def keep(run_id: int, **entries) -> Path:
    """Add ``entries`` to what run ``run_id`` could not record: ``finish`` (outcome, summary,
    details) and/or ``failover_stopped`` (the service whose failover it undid)."""
    private_home()
    path = folder() / f"{run_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    kept = json.loads(path.read_text()) if path.exists() else {"run_id": run_id}
    kept.update(entries)
    kept.setdefault("at", utcnow().isoformat())
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(kept, handle, default=str)
    temporary.replace(path)
    return path


def write_kept() -> list[str]:
    """Write every kept outcome of this inventory; one sentence each. A file is removed only
    once its run is on record, so an inventory that is still unreachable keeps them all."""
    where = folder()
    if not where.is_dir():
        return []
    sentences = []
    for path in sorted(where.glob("*.json")):
        kept = json.loads(path.read_text())
        sentences += _write(kept)
        path.unlink(missing_ok=True)  # another process may have written the same file meanwhile
    for sentence in sentences:
        log.warning("%s", sentence)
    return sentences


def _write(kept: dict) -> list[str]:
    from hotspare.inventory.runs import close_open_steps, finish_run

    run_id, at = kept["run_id"], datetime.fromisoformat(kept["at"])
    sentences = []
    finish = kept.get("finish")
    if finish is not None:
        with session() as db:
            run = db.get(RunRow, run_id)
            open_run = run is not None and run.outcome == "running"
            close_open_steps(db, run_id, at, "the inventory was unreachable when this step ended")
        if open_run:
            summary = (
                f"{finish['summary']} (recorded late: the inventory was unreachable when the run ended at "
                f"{as_utc(at):%Y-%m-%d %H:%M:%S} UTC)"
            )
            finish_run(run_id, finish["outcome"], summary, finish.get("details"))
            with session() as db:
                db.get(RunRow, run_id).ended_at = at
            sentences.append(f"run {run_id} ({run.kind} {run.service}) closed as {finish['outcome']}: {summary}")
    service = kept.get("failover_stopped")
    if service is not None:
        with session() as db:
            row = db.get(ServiceRow, service)
            ours = row is not None and row.state == ServiceState.failing_over and (row.failover or {}).get("run_id") == run_id
            if ours:
                move(row, Event.failover_stopped, log)
                row.failover, row.updated_at = None, utcnow()
        if ours:
            sentences.append(
                f"{service}: the failover of run {run_id} was undone before DNS moved; it is "
                f"{row.state} again on record (the inventory was unreachable when it stopped)"
            )
    return sentences
