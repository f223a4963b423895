"""Who may fail a service over with no approver: the facts, never the ``unattended`` parameter.

Pure decisions (no lab): the failover's own rule (``planning/unattended.py``: the fleet's policy,
the health records holding production down now, and a run no person started), the certificate
issuer's view of the same rule (a person's ``unattended`` run gets no certificate, the health
run's subflow does), and whose name a run started through the API proxy records
(``planning/run_actor.py``). Against the lab: ``tests/test_run_provenance.py``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from hotspare.planning.certificates import FleetLayout, Requester, RunFacts, ServiceHosts, plan_certificate
from hotspare.planning.run_actor import recorded_actor
from hotspare.planning.unattended import (
    Declaration,
    UnattendedFacts,
    declaration_age_limit,
    judge_unattended,
    unattended_counts,
)

NOW = datetime(2026, 12, 6, 16, 0, tzinfo=timezone.utc)
DOWN = Declaration("prod-west", "reachability:ssh", "tcp/22 refused from east and vault", NOW - timedelta(seconds=4))
FROM_HEALTH = UnattendedFacts("app2", "unattended", "prod-west", (DOWN,), NOW, 300.0, "health-run-1", None)


def test_the_health_runs_own_subflow_with_the_policy_and_a_fresh_declaration_is_approved():
    decision = judge_unattended(FROM_HEALTH)
    assert decision.allowed, decision.sentence
    assert "approved as unattended" in decision.sentence and "prod-west down" in decision.sentence
    assert "health run health-run-1, in its process" in decision.sentence


def test_the_control_site_may_start_it_when_the_facts_hold():
    decision = judge_unattended(replace(FROM_HEALTH, from_health_run=None, creator=("control", "control")))
    assert decision.allowed and "the control site (control)" in decision.sentence


@pytest.mark.parametrize(
    "change, words",
    [
        ({"policy": "off"}, "policy for app2 is automatic_failover: off, not unattended"),
        ({"policy": "approval"}, "automatic_failover: approval, not unattended"),
        ({"declarations": ()}, "no health run declares its production prod-west down now"),
        ({"declarations": (replace(DOWN, checked_at=NOW - timedelta(hours=2)),)}, "older than 300 s"),
        ({"from_health_run": None, "creator": ("operator", "otto")}, "started by a person, otto (operator)"),
        ({"from_health_run": None, "creator": ("approver", "april")}, "started by a person, april (approver)"),
        ({"from_health_run": None, "creator": ("worker", "worker-east")}, "started by worker-east (worker)"),
        ({"from_health_run": None, "creator": None}, "not started by the health runbook (no proxy stamped"),
    ],
)
def test_unattended_is_refused_without_each_fact(change, words):
    decision = judge_unattended(replace(FROM_HEALTH, **change))
    assert not decision.allowed
    assert words in decision.sentence, decision.sentence
    assert decision.sentence.startswith("failover of app2 not approved as unattended: ")
    assert "Nothing was changed" in decision.sentence


def test_the_red_team_run_names_every_missing_fact_in_one_sentence():
    """otto's run for app2 (policy off, nothing declared): three reasons, one sentence."""
    decision = judge_unattended(
        replace(FROM_HEALTH, policy="off", declarations=(), from_health_run=None, creator=("operator", "otto"))
    )
    assert not decision.allowed and "\n" not in decision.sentence
    for fact in ("automatic_failover: off", "declares its production prod-west down", "otto (operator)"):
        assert fact in decision.sentence, decision.sentence


def test_a_declaration_lives_three_rounds_and_at_least_five_minutes():
    assert declaration_age_limit(10) == 300 and declaration_age_limit(600) == 1800


@pytest.mark.parametrize(
    "creator, parent, counts",
    [
        ("worker", "health", True),  # the health run's subflow on a facility's worker
        (None, "health", True),  # the same without the proxy
        ("control", None, True),
        ("operator", "health", False),  # a person who names a health run as the parent
        ("approver", None, False),
        ("operator", None, False),
        ("worker", None, False),
        (None, None, False),
        ("worker", "failover", False),
    ],
)
def test_the_issuer_counts_unattended_only_for_the_health_runs_subflow_or_the_control_site(creator, parent, counts):
    assert unattended_counts(creator, parent) is counts


def test_the_issuer_gives_an_operators_unattended_failover_no_certificate():
    layout = FleetLayout(
        {"prod-west": "west", "mirror-east": "east"}, (), (ServiceHosts("app2", ("prod-west", "mirror-east"), "storage-vault"),)
    )
    layout = replace(layout, facility_of={**layout.facility_of, "storage-vault": "vault"})
    east = Requester("east", ("10.0.0.21",), ("hotspare-east",))
    facts = RunFacts(
        "0b5c1a52-8d3e-4c43-9a51-0f7c2b0e1d11",
        "failover",
        "RUNNING",
        {"service": "app2", "unattended": True},
        "hotspare-east",
        None,
        "operator",
    )
    refused = plan_certificate(facts, east, layout, NOW)
    assert refused.refusal and "not approved yet" in refused.refusal
    served = plan_certificate(replace(facts, creator_role="worker", parent_flow="health"), east, layout, NOW)
    assert served.refusal is None and served.principals == ("mirror-east", "prod-west")


@pytest.mark.parametrize(
    "typed, creator, behind, recorded",
    [
        ("Dana Ops", ("operator", "otto"), True, "otto (operator) for Dana Ops"),
        ("otto", ("operator", "otto"), True, "otto (operator)"),
        ("", ("approver", "april"), True, "april (approver)"),
        ("operator", ("approver", "april"), True, "april (approver)"),  # the form's default names nobody
        ("Dana Ops", ("worker", "worker-east"), True, "worker-east (worker) for Dana Ops"),
        ("Dana Ops", ("control", "control"), True, "Dana Ops"),  # the control site's commands name their operator
        ("Dana Ops", None, False, "Dana Ops"),  # one machine, no logins: as typed
        (" Dana Ops ", None, True, "Dana Ops"),
    ],
)
def test_a_run_records_the_login_that_started_it_not_the_typed_name(typed, creator, behind, recorded):
    assert recorded_actor(typed, creator, behind) == recorded
