"""Verification proportional to change, against the real lab: each replication compares what
changed plus a rolling slice, and every file is still compared within the period.

The copies are damaged the way silent corruption looks (same size, same mtime: rsync's quick
check cannot see it) and judged independently of the verify code (hashing both hosts' folders).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from prefect import flow
from test_replication import writable_copy

from flows.replicate import replicate_service
from flows.verify import check_copy, verify
from hotspare.cli import main
from hotspare.inventory import copies, copy_stores
from hotspare.planning.replication import copy_tree
from tasks.replication import copy_to_mirror, preflight

from lab_helpers import host_path, tree_digest

SERVICE = "app1"
pytestmark = pytest.mark.lab


@pytest.fixture
def schedule(fleet, lab_env, tmp_path):
    """Load the lab's fleet with other verification settings; the original is loaded back after."""
    original = Path(lab_env["fleet_file"])

    def load(days: float, per_day: float) -> None:
        document = yaml.safe_load(original.read_text())
        # snapshots filled by rsync: these tests judge its listings and itemized changes (shipped
        # copies are verified by the UUID chain and a slice: tests/test_snapshot_shipping.py)
        document["replication"] = {
            **(document.get("replication") or {}),
            "full_verification_days": days,
            "replications_per_day": per_day,
            "copy_backend": "btrfs-snapshot",
        }
        changed = tmp_path / "fleet.yaml"
        changed.write_text(yaml.safe_dump(document, sort_keys=False))
        assert main(["fleet", "load", str(changed)]) == 0

    yield load
    assert main(["fleet", "load", str(original)]) == 0


def flip_keeping_mtime(path: Path) -> None:
    """One bit flipped; same size, same mtime."""
    before = path.stat()
    content = bytearray(path.read_bytes())
    content[0] ^= 0x01
    path.write_bytes(bytes(content))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def data(lab_env: dict, host: str, copy_id: str | None = None) -> Path:
    service = lab_env["services"][SERVICE]
    return host_path(lab_env, service[host], (copy_tree(SERVICE, copy_id) if copy_id else "") + service["data_path"])


def status_of(capsys) -> dict:
    capsys.readouterr()  # what earlier commands printed
    assert main(["status", "--json", "--timeout", "1"]) == 0
    return {record["service"]: record for record in json.loads(capsys.readouterr().out)["services"]}[SERVICE]


def test_damage_outside_the_slice_and_unchanged_is_compared_within_the_period(schedule, lab_env, capsys):
    assert replicate_service(SERVICE)["outcome"] == "ok"
    assert verify([SERVICE], full=True)[SERVICE]["passed"]  # a complete pass: the next run starts a new one
    mirror = lab_env["services"][SERVICE]["mirror"]
    schedule(days=1, per_day=2)  # the rolling pass covers everything in two replications

    # silent damage the next copies inherit: in the working tree (snapshots) or the current copy (hard links)
    working = host_path(lab_env, mirror, f"/srv/hotspare/{SERVICE}/work/tree") / data(lab_env, "production").relative_to(
        host_path(lab_env, lab_env["services"][SERVICE]["production"], "/")
    )
    damaged = working / "uploads" / "readme.txt"  # the last file in path order: the pass's second half
    if working.exists():
        flip_keeping_mtime(damaged)
    else:
        damaged = data(lab_env, "mirror", copies.current_copy(SERVICE).id) / "uploads" / "readme.txt"
        with writable_copy(damaged.parent):
            flip_keeping_mtime(damaged)

    first = replicate_service(SERVICE)
    assert first["outcome"] == "ok"
    first_copy = data(lab_env, "mirror", first["copy_id"])
    # proportional: the first half of the pass did not reach the damaged file, the copy step did not see it
    assert tree_digest(first_copy) != tree_digest(data(lab_env, "production"))
    in_progress = status_of(capsys)["verification_pass"]
    assert in_progress["files_done"] > 0 and in_progress["started_at"]
    full_before = copy_stores.store_of(SERVICE, mirror).last_full_pass_at

    second = replicate_service(SERVICE)
    assert second["outcome"] == "ok"
    # the second half of the pass compared it, the repair re-sent it: the new copy equals production
    assert tree_digest(data(lab_env, "mirror", second["copy_id"])) == tree_digest(data(lab_env, "production"))
    record = status_of(capsys)
    assert record["full_verification"]["completed_at"] and record["full_verification"]["files"] >= 5
    assert copy_stores.store_of(SERVICE, mirror).last_full_pass_at > full_before
    assert record["verification_pass"]["files_done"] == 0  # a new pass begins with the next replication


@flow(name="copy-then-check")
def copy_damage_check(damage) -> dict:
    """The replication's own steps, with damage done to the new copy between copy and verification."""
    plan = preflight(SERVICE)
    stats = copy_to_mirror(plan, "test-rolling")
    damage(plan.copy_id, stats["changed_files"])
    return check_copy(SERVICE, plan.copy_id, changed=stats["changed_files"])


def test_damage_in_a_changed_file_is_found_at_once(schedule, lab_env):
    assert replicate_service(SERVICE)["outcome"] == "ok"
    assert verify([SERVICE], full=True)[SERVICE]["passed"]
    schedule(days=365, per_day=2)  # a slice of one file or two: the rest is not compared this run
    changed = data(lab_env, "production") / "uploads" / "readme.txt"
    changed.write_text("Customer uploads, changed on production.\n")

    def damage(copy_id: str, itemized: list[str]) -> None:
        assert "/srv/app1/data/uploads/readme.txt" in [path[-len("/srv/app1/data/uploads/readme.txt") :] for path in itemized]
        in_copy = data(lab_env, "mirror", copy_id) / "uploads" / "readme.txt"
        with writable_copy(in_copy.parent):
            flip_keeping_mtime(in_copy)

    outcome = copy_damage_check(damage)
    assert not outcome["passed"]
    assert not outcome["summary"]["whole_tree"] and outcome["summary"]["compared_files"] < outcome["summary"]["total_files"]
    assert any("/srv/app1/data/uploads/readme.txt" in failure for failure in outcome["summary"]["failures"])
    assert replicate_service(SERVICE)["outcome"] == "ok"  # the next replication makes a good copy
