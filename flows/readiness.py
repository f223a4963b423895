"""Runbook: the readiness report, scheduled weekly; its markdown lands as an artifact.

The facts and the judgement are ``tasks/readiness.py`` (also used by ``hotspare readiness`` and
the continuity plan).
"""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from tasks.readiness import gather_readiness


@flow(name="readiness", log_prints=True)
def readiness(days: int = 90, minimum_people: int = 3) -> dict:
    """Judge readiness now and publish it; the run never fails for a flag (it reports them).

    Args:
        days: Count what was done for real or in a drill in the last this many days.
        minimum_people: Flag a procedure fewer than this many people have performed.
    """
    report = gather_readiness(days, minimum_people)
    create_markdown_artifact(report.markdown(), key="readiness", description="Readiness: drills, restore proofs, trained people")
    for flag in report.flags:
        print(f"NOT READY: {flag}")
    return report.as_dict()
