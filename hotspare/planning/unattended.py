"""When a failover's ``unattended`` parameter approves it: the facts decide, never the parameter.

The health runbook fails a service over by itself, with no approver asked, when three facts hold
(``judge_unattended``):

- the fleet's health policy for the service is ``automatic_failover: unattended``;
- the inventory's health records hold the service's current production down *now*: a
  reachability component of that server judged failed by the multi-site quorum, checked within
  ``max_age_seconds`` (a declaration the health runs stopped renewing is no declaration);
- the run was not started by a person: it is the health run's own subflow, in its process
  (``flows/unattended_gate.py`` proves that with a context only that process has), or the API
  proxy stamped the control site as its creator.

A person who starts ``failover`` with ``unattended: true`` (an operator may start runs, not
approve them) is refused before any change, with one sentence that names every fact missing.

The certificate issuer sees a run from Prefect only, never its process: for it ``unattended``
counts when the run is a subflow of a ``health`` run that no person created, or the control site
created it (``unattended_counts``). Pure: facts in, a decision out; no Prefect, network or clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hotspare.adapters.errors import NotApproved
from hotspare.planning.api_access import CONTROL, PEOPLE_ROLES

HEALTH_FLOW = "health"
MIN_DECLARATION_AGE_SECONDS = 300.0  # health rounds renew their records every interval; this is the least allowed


class UnattendedRefused(NotApproved):
    """A failover asked to run unattended without the facts that allow it; nothing changed."""


@dataclass(frozen=True)
class Declaration:
    """One health record that holds a server down: its component, evidence and last check."""

    server: str
    component: str
    evidence: str
    checked_at: datetime


@dataclass(frozen=True)
class UnattendedFacts:
    """What the runbook read before deciding (the fleet, the inventory, the run's provenance)."""

    service: str
    policy: str  # the fleet's automatic_failover for the service: off | approval | unattended
    production: str  # the server the inventory says runs the service now
    declarations: tuple[Declaration, ...]  # failed reachability records of ``production``
    now: datetime
    max_age_seconds: float
    from_health_run: str | None  # the health run's id when this failover is its in-process subflow
    creator: tuple[str, str] | None  # (role, name) the API proxy stamped on this run, if any


@dataclass(frozen=True)
class Decision:
    allowed: bool
    sentence: str


def declaration_age_limit(interval_seconds: float) -> float:
    """How old a health record may be and still declare production down now: three rounds of the
    fleet's interval, at least ``MIN_DECLARATION_AGE_SECONDS``."""
    return max(MIN_DECLARATION_AGE_SECONDS, 3 * interval_seconds)


def judge_unattended(facts: UnattendedFacts) -> Decision:
    """Whether ``unattended`` approves this failover; the sentence says why (or every reason not)."""
    missing = []
    if facts.policy != "unattended":
        missing.append(f"the fleet's health policy for {facts.service} is automatic_failover: {facts.policy}, not unattended")
    fresh = [
        declaration
        for declaration in facts.declarations
        if (facts.now - declaration.checked_at).total_seconds() <= facts.max_age_seconds
    ]
    if not fresh:
        stale = (
            f" (the newest record is from {max(d.checked_at for d in facts.declarations):%Y-%m-%d %H:%M:%S} UTC, "
            f"older than {facts.max_age_seconds:.0f} s)"
            if facts.declarations
            else ""
        )
        missing.append(f"no health run declares its production {facts.production} down now{stale}")
    started_by = _started_by(facts)
    if started_by:
        missing.append(started_by)
    if missing:
        return Decision(
            False,
            f"failover of {facts.service} not approved as unattended: "
            + "; ".join(missing)
            + ". Nothing was changed; an approver approves it (start it without unattended and answer "
            "its gate)",
        )
    who = (
        f"health run {facts.from_health_run}, in its process"
        if facts.from_health_run
        else f"the control site ({facts.creator[1]})"
        if facts.creator
        else "the control site"
    )
    newest = max(fresh, key=lambda declaration: declaration.checked_at)
    return Decision(
        True,
        f"failover of {facts.service} approved as unattended: the fleet's health policy is "
        f"unattended, the health records hold {facts.production} down ({newest.component}: "
        f"{newest.evidence[:200]}), and it was started by {who}",
    )


def _started_by(facts: UnattendedFacts) -> str:
    """Why the run's starter may not approve unattended, or "" when it may."""
    if facts.from_health_run:
        return ""
    if facts.creator is not None and facts.creator[0] == CONTROL:
        return ""
    if facts.creator is None:
        return "the run was not started by the health runbook (no proxy stamped who started it)"
    role, name = facts.creator
    person = "a person, " if role in PEOPLE_ROLES else ""
    return f"the run was started by {person}{name} ({role}), not by the health runbook"


def unattended_counts(creator_role: str | None, parent_flow: str | None) -> bool:
    """For the certificate issuer: does a run's ``unattended: true`` count as approval? Only for
    the health runbook's own subflow that no person created, or a run the control site created."""
    if creator_role == CONTROL:
        return True
    return parent_flow == HEALTH_FLOW and creator_role not in PEOPLE_ROLES
