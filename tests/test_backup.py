"""Backups to the storage host, repository checks and restore proofs, against the lab (the pure
plans are tests/unit/test_backup_plans.py).

The lab tests use app2 (app1 belongs to the rebuild test) and leave its repository as they
found it: the corrupted pack file is written back byte for byte.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# ----- against the lab --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app2_backup(fleet):
    """One real backup of app2, shared by the tests of this module."""
    from flows.backup import backup

    result = backup(service="app2")
    assert result["app2"]["outcome"] == "ok"
    return result["app2"]


@pytest.mark.lab
def test_backup_then_restore_proof_passes(fleet, app2_backup):
    from sqlmodel import select

    from flows.restore_proof import restore_proof
    from hotspare.backup_status import backup_fields
    from hotspare.inventory import session
    from hotspare.inventory.backup_models import RestoreProofRow

    assert app2_backup["files"] >= 5 and app2_backup["source"] == "prod-west"
    result = restore_proof(service="app2")["app2"]
    assert result["outcome"] == "passed", result
    assert result["snapshot"] == app2_backup["snapshot_id"][:8]
    with session() as db:
        row = db.exec(
            select(RestoreProofRow).where(RestoreProofRow.service == "app2").order_by(RestoreProofRow.id.desc())
        ).first()
    assert row.outcome == "passed" and row.files_checked == result["files_checked"] and row.duration_s > 0
    fields = backup_fields("app2")
    assert fields["backup_age_hours"] < 1 and fields["restore_proof"]["outcome"] == "passed"


@pytest.mark.lab
def test_corrupted_pack_file_is_caught_and_repair_restores_a_clean_check(fleet, lab_env, app2_backup):
    from flows.backup import backup_check
    from flows.restore_proof import restore_proof

    repository = Path(lab_env["hosts"]["storage-vault"]["root"]) / "srv/backup/app2"
    pack = max((path for path in (repository / "data").rglob("*") if path.is_file()), key=lambda path: path.stat().st_size)
    original = pack.read_bytes()
    middle = len(original) // 2
    try:
        pack.chmod(0o600)
        pack.write_bytes(original[:middle] + bytes(b ^ 0xFF for b in original[middle : middle + 16]) + original[middle + 16 :])
        state = backup_check(service="app2", subset="1/1", return_state=True)
        assert state.is_failed()
        proof = restore_proof(service="app2", return_state=True)
        assert proof.is_failed()
    finally:
        pack.write_bytes(original)
    assert backup_check(service="app2", subset="1/1")["app2"]["outcome"] == "ok"


@pytest.mark.lab
def test_a_rolled_back_repository_fails_its_proof_naming_both_snapshots(fleet, lab_env, app2_backup, tmp_path):
    import subprocess

    from sqlmodel import select

    from flows.backup import backup
    from flows.restore_proof import restore_proof
    from hotspare.inventory import session
    from hotspare.inventory.backup_models import RestoreProofRow

    repository = Path(lab_env["hosts"]["storage-vault"]["root"]) / "srv/backup/app2"
    older, newer = tmp_path / "older", tmp_path / "newer"
    subprocess.run(["cp", "-a", str(repository), str(older)], check=True, timeout=120)  # as it was after app2_backup
    recorded = backup(service="app2")["app2"]  # the newest backup the inventory records
    assert recorded["outcome"] == "ok" and recorded["snapshot_id"] != app2_backup["snapshot_id"]
    subprocess.run(["cp", "-a", str(repository), str(newer)], check=True, timeout=120)
    try:
        # the storage host's repository restored from an older copy of its files: it restores fine
        subprocess.run(["rm", "-rf", "--", str(repository)], check=True, timeout=120)
        subprocess.run(["cp", "-a", str(older), str(repository)], check=True, timeout=120)
        state = restore_proof(service="app2", return_state=True)
        assert state.is_failed()
        with session() as db:
            row = db.exec(
                select(RestoreProofRow).where(RestoreProofRow.service == "app2").order_by(RestoreProofRow.id.desc())
            ).first()
        assert row.outcome == "failed" and "rolled back" in row.detail, row.detail
        assert recorded["snapshot_id"][:8] in row.detail and app2_backup["snapshot_id"][:8] in row.detail
    finally:
        subprocess.run(["rm", "-rf", "--", str(repository)], check=True, timeout=120)
        subprocess.run(["cp", "-a", str(newer), str(repository)], check=True, timeout=120)
    assert restore_proof(service="app2")["app2"]["snapshot"] == recorded["snapshot_id"][:8]
