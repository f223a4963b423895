"""Gathering the readiness facts from the inventory (runs with their operators, drills, restore
proofs) and the fleet's targets, then judging them (``planning/readiness.py``).

Used by the readiness runbook, ``hotspare readiness`` and the continuity plan.
"""

from __future__ import annotations

from sqlmodel import select

from hotspare import access
from hotspare.inventory.backup_models import RestoreProofRow
from hotspare.inventory.db import session
from hotspare.inventory.models import RunRow, as_utc, utcnow
from hotspare.planning.readiness import DrillFact, ProofFact, Readiness, RunFact, ServiceTargets, judge_readiness

# Runs that count as performing a procedure (replications and verifications teach nothing).
PROCEDURE_KINDS = ("failover", "facility-failover", "rebuild", "reprotect", "facility-return", "restore")


def gather_readiness(days: int = 90, minimum_people: int = 3, fleet=None) -> Readiness:
    """Read the facts and judge them (see ``planning/readiness.py``)."""
    fleet = fleet or access.loaded_fleet()
    targets = [
        ServiceTargets(
            service.name,
            60 * (service.rto_minutes or fleet.defaults.rto_minutes),
            3600 * fleet.rpo_hours_of(service),
            service.backup is not None,
        )
        for service in sorted(fleet.services, key=lambda s: (s.tier, s.name))
    ]
    with session() as db:
        run_rows = list(db.exec(select(RunRow).where(RunRow.kind.in_(PROCEDURE_KINDS))))
        proof_rows = list(db.exec(select(RestoreProofRow)))
    runs = [
        RunFact(
            row.kind,
            row.service,
            as_utc(row.started_at),
            row.outcome,
            getattr(row, "operator", "") or "",
            (row.details or {}).get("mode"),
            (row.details or {}).get("rto_seconds"),
        )
        for row in run_rows
    ]
    proofs = [ProofFact(row.service, as_utc(row.started_at), row.outcome) for row in proof_rows]
    return judge_readiness(targets, drill_facts(), runs, proofs, utcnow(), days=days, minimum_people=minimum_people)


def drill_facts() -> list[DrillFact]:
    """Drills recorded by the drill runbook, if this installation has it."""
    try:
        from hotspare.inventory.drills import DrillRow
    except ImportError:
        return []
    with session() as db:
        rows = list(db.exec(select(DrillRow)))
    return [
        DrillFact(
            service=row.service,
            started=as_utc(row.started),
            outcome=row.outcome,
            operators=tuple(name.strip() for name in (row.operators or "").split(",") if name.strip()),
            rto_seconds=row.rto_seconds,
            rpo_seconds=row.rpo_seconds,
            cleanup_proven=bool(row.cleanup_proven),
            procedure=getattr(row, "procedure", None) or "failover",
        )
        for row in rows
    ]
