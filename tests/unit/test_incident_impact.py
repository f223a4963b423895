"""What an incident affects and whom it tells, without the lab: health events and layouts in,
impacts, notice plans and judged states out."""

from __future__ import annotations

from hotspare.fleet.customer_schema import CustomerNotices
from hotspare.planning.health import ComponentStatus, Rules, SiteReport, judge
from hotspare.planning.incident_rules import Placement, from_health_event, impact_of
from hotspare.planning.notices import plan_notice, render_body
from hotspare.planning.readings import ComponentKind, ComponentState, Reading
from hotspare.planning.status_page import affects_text

SECTION = CustomerNotices.model_validate(
    {
        "customers": [
            {"name": "acme", "services": ["app1"], "contacts": [{"name": "Ana", "email": "ana@acme.test"}]},
            {"name": "globex", "services": ["app2"], "contacts": [{"name": "Gil", "email": "gil@globex.test"}]},
        ],
        "policy": [{"category": 1, "action": "send"}, {"category": 2, "action": "approve"}],
    }
)
# prod-east runs app1 and mirrors app2; storage-vault backs both up.
LAYOUT = [
    Placement("app1", "prod-east", "mirror-west", "storage-vault"),
    Placement("app2", "prod-west", "prod-east", "storage-vault"),
]


def impact_dicts(impacts) -> list[dict]:
    return [{"service": i.service, "server": i.server, "role": i.role, "effect": i.effect, "tell": i.tell} for i in impacts]


def incident(impacts, **changes) -> dict:
    impact = impact_dicts(impacts)
    base = {
        "id": 9,
        "category": 1,
        "category_name": "server",
        "severity": "high",
        "title": "server prod-east down",
        "status": "triggered",
        "opened_at": "2026-05-01T14:03:00+00:00",
        "resolved_at": None,
        "services": sorted({item["service"] for item in impact}),
        "servers": ["prod-east"],
        "events": [],
        "impact": impact,
        "customer_services": sorted({item["service"] for item in impact if item["tell"]}),
        "internal": False,
    }
    return base | changes


def test_a_lost_server_affects_everything_it_holds_by_role():
    impacts = impact_of({"prod-east"}, [], LAYOUT, outage=True)
    assert [(i.service, i.role, i.effect) for i in impacts] == [
        ("app1", "production", "customers affected"),
        ("app2", "mirror", "protection lost"),
    ]
    storage = impact_of({"storage-vault"}, [], LAYOUT, outage=True)
    assert {(i.service, i.role, i.tell) for i in storage} == {("app1", "storage", False), ("app2", "storage", False)}


def test_the_notice_tells_the_customers_decided_at_opening_even_after_a_failover():
    opened = incident(impact_of({"prod-east"}, [], LAYOUT, outage=True))
    after_failover = {"app1": "mirror-west", "app2": "prod-west"}
    plan = plan_notice(opened, "opened", SECTION, after_failover, moved_at={"app1": "2026-05-01T14:03:40+00:00"})
    assert plan.services == ("app1",) and [r.email for r in plan.recipients] == ["ana@acme.test"]
    assert plan.decision.go and not plan.attention, plan.decision.reason
    body = render_body(plan, plan.recipients[0], opened, SECTION)
    assert (
        "app1 was unavailable from 2026-05-01 14:03 UTC; it runs again from its standby copy in a second "
        "data center since 2026-05-01 14:03 UTC."
    ) in body
    assert affects_text(opened | {"services": list(plan.services)}) == "app1"


def test_a_redundant_part_is_internal_low_and_tells_nobody():
    payload = {
        "server": "prod-east",
        "component": "disk:devid 2",
        "kind": "disk",
        "state": "failed",
        "previous": "ok",
        "evidence": "devid 2 (/dev/loop9) is missing from the filesystem",
    }
    request = from_health_event("hotspare.health.failed", "hotspare.server.prod-east", payload)
    assert (request.severity, request.internal, request.outage) == ("low", True, False)
    assert request.dedup_key == "health:hotspare.server.prod-east:disk:devid 2"  # not the machine's outage key
    impacts = impact_of(set(request.servers), list(request.services), LAYOUT, request.outage)
    assert {i.effect for i in impacts} == {"at risk"} and not any(i.tell for i in impacts)
    plan = plan_notice(incident(impacts, severity="low", internal=True), "opened", SECTION, {})
    assert not plan.decision.go and not plan.attention and "internal" in plan.decision.reason
    degraded_array = from_health_event(
        "hotspare.health.degraded", "hotspare.server.prod-east", {"component": "raid:/srv", "kind": "raid", "state": "degraded"}
    )
    assert degraded_array.internal and degraded_array.severity == "low"


def test_a_service_failure_affects_that_service_only_and_a_hot_server_no_customer():
    request = from_health_event(
        "hotspare.health.failed",
        "hotspare.service.app1",
        {"server": "prod-east", "component": "application:direct", "kind": "application"},
    )
    assert request.holders == () and request.dedup_key == "health:hotspare.server.prod-east:failed"
    impacts = impact_of(set(request.holders), list(request.services), LAYOUT, request.outage)
    assert [(i.service, i.role, i.tell) for i in impacts] == [("app1", "service", True)]
    hot = from_health_event(
        "hotspare.health.failed", "hotspare.server.prod-east", {"component": "temperature:Inlet Temp", "kind": "temperature"}
    )
    assert hot.severity == "high" and not hot.outage


def test_a_held_notice_needs_attention_and_one_with_nobody_to_tell_does_not():
    cat2 = incident(impact_of({"prod-east"}, [], LAYOUT, outage=True), category=2)
    held = plan_notice(cat2, "opened", SECTION, {})
    assert not held.decision.go and held.attention and "approval" in held.decision.reason
    mirror_only = incident(impact_of({"mirror-west"}, [], LAYOUT, outage=True), servers=["mirror-west"])
    quiet = plan_notice(mirror_only, "opened", SECTION, {})
    assert not quiet.decision.go and not quiet.attention and "no customer to tell" in quiet.decision.reason
    assert affects_text(mirror_only | {"services": []}) == "no service is down"
    unknown = incident(impact_of(set(), ["app9"], LAYOUT, outage=True), servers=[])
    dropped = plan_notice(unknown, "opened", SECTION, {})
    assert not dropped.decision.go and dropped.attention and "no customer in the fleet file" in dropped.decision.reason


def test_a_moved_service_is_judged_afresh_at_its_new_address():
    sites = [SiteReport("control", "control"), SiteReport("west", "west")]
    rules = Rules(failures_to_down=3, successes_to_recover=2)
    was_failed = ComponentStatus(
        "service:app1", "application:dns", ComponentKind.application, ComponentState.failed, part={"server": "prod-east"}
    )
    good = [
        Reading("service:app1", "application:dns", ComponentKind.application, ComponentState.ok, "200 OK", site)
        for site in ("control", "west")
    ]
    same_place = judge(good, sites, {was_failed.key: was_failed}, {"service:app1": "east"}, rules, {"service:app1": "prod-east"})
    assert same_place.statuses[was_failed.key].state == ComponentState.failed  # hysteresis: 1 of 2
    moved = judge(good, sites, {was_failed.key: was_failed}, {"service:app1": "west"}, rules, {"service:app1": "mirror-west"})
    status = moved.statuses[was_failed.key]
    assert status.state == ComponentState.ok and status.part["server"] == "mirror-west"
    assert [change.state for change in moved.changes] == [ComponentState.ok]
    assert any("moved from prod-east to mirror-west" in sentence for sentence in moved.decisions)
    counting = ComponentStatus(
        "service:app1", "application:dns", ComponentKind.application, worse_rounds=2, part={"server": "prod-east"}
    )
    bad = [
        Reading("service:app1", "application:dns", ComponentKind.application, ComponentState.failed, "refused", site)
        for site in ("control", "west")
    ]
    afresh = judge(bad, sites, {counting.key: counting}, {"service:app1": "west"}, rules, {"service:app1": "mirror-west"})
    assert afresh.statuses[counting.key].state == ComponentState.ok and afresh.statuses[counting.key].worse_rounds == 1
    assert afresh.changes == ()


def test_a_round_sets_aside_only_services_that_moved_or_are_moving():
    from flows.health import moving_services

    before = {"app1": ("prod-east", "protected"), "app2": ("prod-west", "moving"), "app3": ("prod-x", "failing-over")}
    after = {"app1": ("mirror-west", "failed-over"), "app2": ("prod-west", "moving"), "app3": ("prod-x", "failing-over")}
    moving = moving_services(before, after)
    assert moving == {
        "app1": "it moved from prod-east to mirror-west during the round",
        "app2": "it was failing over during the round",
    }  # app3: stalled for long, judged again
