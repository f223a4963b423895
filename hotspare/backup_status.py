"""Backup facts for ``hotspare status``: newest backup's age, last restore proof and its duration.

Reads only the inventory (no Prefect, no network) and never raises: an inventory without the
backup tables, or a service without backups, shows "-".
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlmodel import select

from hotspare.planning.ages import age_text, ago_text, hours_text


def backup_fields(service_name: str, now: datetime | None = None) -> dict:
    """``backup_age_hours``, ``backup_snapshot`` and ``restore_proof`` of one service, plus the
    short texts ``backup_age`` and ``restore_proof_text`` for the status table."""
    from hotspare.inventory import session
    from hotspare.inventory.backup_models import BackupRow, RestoreProofRow

    now = now or datetime.now(timezone.utc)
    try:
        with session() as db:
            backup = db.exec(
                select(BackupRow)
                .where(BackupRow.service == service_name)
                .where(BackupRow.outcome == "ok")
                .order_by(BackupRow.started_at.desc())
            ).first()
            proof = db.exec(
                select(RestoreProofRow)
                .where(RestoreProofRow.service == service_name)
                .where(RestoreProofRow.outcome != "running")
                .order_by(RestoreProofRow.started_at.desc())
            ).first()
    except Exception:
        backup = proof = None
    age = round((now - _utc(backup.started_at)).total_seconds() / 3600, 3) if backup else None
    fields = {
        "backup_age_hours": age,
        "backup_snapshot": (backup.snapshot_id or "")[:8] if backup else None,
        "restore_proof": None,
        "backup_age": hours_text(age, unknown="-"),
        "restore_proof_text": "-",
    }
    if proof:
        fields["restore_proof"] = {
            "outcome": proof.outcome,
            "at": _utc(proof.started_at),
            "duration_s": proof.duration_s,
            "snapshot": (proof.snapshot_id or "")[:8],
        }
        fields["restore_proof_text"] = (
            f"{proof.outcome} {ago_text(_utc(proof.started_at), now)} ({age_text(proof.duration_s or 0)})"
        )
    return fields


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
