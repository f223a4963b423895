"""Readiness from run records alone: who knows each procedure, overdue drills and restore proofs
(the command against the lab is tests/test_readiness.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hotspare.planning.readiness import (
    DrillFact,
    ProofFact,
    RunFact,
    ServiceTargets,
    judge_readiness,
    procedures_of_run,
)

NOW = datetime(2030, 5, 1, 12, 0, tzinfo=timezone.utc)


TARGETS = [ServiceTargets("app1", rto_seconds=1800, rpo_seconds=12 * 3600)]


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def test_a_procedure_known_by_fewer_than_three_is_flagged_and_names_who_knows_it():
    runs = [
        RunFact("failover", "app1", ago(3), "ok", "dana", mode="emergency", rto_seconds=9.5),
        RunFact("failover", "app1", ago(200), "ok", "old-timer"),
    ]  # outside the window
    drills = [DrillFact("app1", ago(10), "ok", ("lee", "kim"), rto_seconds=40, rpo_seconds=3600, cleanup_proven=True)]
    report = judge_readiness(TARGETS, drills, runs, [ProofFact("app1", ago(1), "passed")], NOW)
    by_name = {item.procedure: item for item in report.procedures}
    assert by_name["failover"].people == ("dana", "kim", "lee") and by_name["failover"].flag is None
    assert by_name["failover"].real == ("dana",) and by_name["failover"].drilled == ("kim", "lee")
    assert by_name["rebuild"].people == () and "only 0 people" in by_name["rebuild"].flag
    # training is a drill the trainees watch, never a real runbook run as an exercise
    assert "`hotspare drill SERVICE --watched-by NAME" in by_name["rebuild"].flag
    assert not any("hotspare failover" in flag or "hotspare rebuild" in flag for flag in report.flags)
    assert any(flag.startswith("facility failover: only 0 people") for flag in report.flags)
    assert not report.ready and report.services[0].flags == ()
    assert report.services[0].last_failover_rto_seconds == 9.5


def test_failed_runs_and_failed_drills_teach_nobody():
    runs = [RunFact("rebuild", "app1", ago(1), "failed", name) for name in ("a", "b", "c")]
    drills = [DrillFact("app1", ago(1), "unhealthy", ("d", "e", "f"))]
    report = judge_readiness(TARGETS, drills, runs, [], NOW)
    by_name = {item.procedure: item for item in report.procedures}
    assert by_name["rebuild"].people == () and by_name["failover"].people == ()
    assert "last drill unhealthy" in " ".join(report.services[0].flags)


def test_procedures_of_runs():
    assert procedures_of_run(RunFact("failover", "s", NOW, "ok", "x", mode="planned")) == ("failover", "reprotect/failback")
    assert procedures_of_run(RunFact("rebuild", "s", NOW, "ok", "x")) == ("rebuild", "restore")
    assert procedures_of_run(RunFact("facility-return", "s", NOW, "ok", "x")) == ("reprotect/failback",)
    assert procedures_of_run(RunFact("replicate", "s", NOW, "ok", "x")) == ()


def test_service_flags_overdue_drill_targets_and_restore_proof():
    drills = [DrillFact("app1", ago(120), "ok", ("a",), rto_seconds=2400, rpo_seconds=13 * 3600, cleanup_proven=False)]
    report = judge_readiness(
        TARGETS, drills, [], [ProofFact("app1", ago(30), "passed"), ProofFact("app1", ago(1), "failed")], NOW
    )
    flags = " | ".join(report.services[0].flags)
    assert "drill overdue: the last was 120 days ago" in flags
    assert "drill RTO 40 min over the target 30 min" in flags
    assert "drill RPO 13.0 h over the target 12.0 h" in flags
    assert "cleanup was not proven" in flags
    assert "restore proof overdue: the last passed 30 days ago" in flags


def test_never_drilled_and_no_proof():
    report = judge_readiness(TARGETS + [ServiceTargets("nobackup", 60, 60, has_backup=False)], [], [], [], NOW)
    first, second = report.services
    assert any("never drilled" in flag for flag in first.flags) and any("no restore proof" in flag for flag in first.flags)
    assert not any("restore proof" in flag for flag in second.flags)
    text = report.markdown()
    assert "| rebuild | 0 |" in text and "never drilled" in text
    assert report.as_dict()["ready"] is False


def test_three_people_make_a_procedure_ready():
    runs = [RunFact("facility-failover", "facility:east", ago(day), "ok", name) for day, name in ((1, "a"), (2, "b"), (3, "c"))]
    report = judge_readiness(TARGETS, [], runs, [], NOW)
    item = next(p for p in report.procedures if p.procedure == "facility failover")
    assert item.flag is None and item.people == ("a", "b", "c") and item.last == ago(1)
