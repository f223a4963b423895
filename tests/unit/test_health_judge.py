"""The health judge and the replacement planner, without the lab: plain readings in, states out."""

from __future__ import annotations

from hotspare.planning.health import (
    ComponentStatus,
    Rules,
    SiteReport,
    judge,
    production_down,
    site_report,
    worst_component,
)
from hotspare.planning.readings import ComponentKind, ComponentState, Reading
from hotspare.planning.replacements import SWAP_NOTE, plan_replacements, request_for

OK, FAILED, DEGRADED, UNKNOWN = ComponentState.ok, ComponentState.failed, ComponentState.degraded, ComponentState.unknown
SITES = [SiteReport("control", "control"), SiteReport("east", "east"), SiteReport("west", "west")]
FACILITY_OF = {"prod-east": "east", "prod-west": "west", "service:app1": "east"}
RULES = Rules(failures_to_down=3, successes_to_recover=2)


def reach(subject: str, **states: ComponentState) -> list[Reading]:
    return [
        Reading(subject, "reachability:ssh", ComponentKind.reachability, state, f"{site} saw {state.value}", site)
        for site, state in states.items()
    ]


def rounds(observations: list[list[Reading]], sites=SITES, previous=None, rules=RULES):
    """Judge several rounds in a row; returns every judgement."""
    statuses, judgements = dict(previous or {}), []
    for readings in observations:
        judgement = judge(readings, sites, statuses, FACILITY_OF, rules)
        statuses = judgement.statuses
        judgements.append(judgement)
    return judgements


def state_after(judgements, subject="prod-east", component="reachability:ssh"):
    return judgements[-1].statuses[(subject, component)].state


def test_down_only_after_n_agreed_rounds():
    judgements = rounds([reach("prod-east", control=FAILED, west=FAILED, east=FAILED)] * 3)
    assert [len(j.changes) for j in judgements] == [0, 0, 1]
    change = judgements[-1].changes[0]
    assert (change.previous, change.state, change.event) == (OK, FAILED, "hotspare.health.failed")
    assert change.resource_id == "hotspare.server.prod-east"
    assert change.sites == ("control", "east", "west")
    assert "after 3 consecutive rounds" in judgements[-1].decisions[-1]


def test_one_blip_is_not_down_and_resets_the_count():
    bad = reach("prod-east", control=FAILED, west=FAILED, east=FAILED)
    good = reach("prod-east", control=OK, west=OK, east=OK)
    judgements = rounds([bad, bad, good, bad, bad])
    assert all(not j.changes for j in judgements)
    assert state_after(judgements) == OK
    assert judgements[-1].statuses[("prod-east", "reachability:ssh")].worse_rounds == 2


def test_one_site_alone_never_declares_down():
    judgements = rounds([reach("prod-east", control=FAILED, west=OK, east=OK)] * 10)
    assert state_after(judgements) == OK
    assert "not enough to agree" in judgements[-1].statuses[("prod-east", "reachability:ssh")].evidence


def test_agreement_needs_a_site_outside_the_servers_facility():
    sites = [SiteReport("east-a", "east"), SiteReport("east-b", "east"), SiteReport("control", "control")]
    readings = [
        Reading("prod-east", "reachability:ssh", ComponentKind.reachability, FAILED, "timeout", site)
        for site in ("east-a", "east-b")
    ]
    readings.append(Reading("prod-east", "reachability:ssh", ComponentKind.reachability, OK, "answered", "control"))
    assert state_after(rounds([readings] * 5, sites=sites)) == OK
    # The only two sites, both inside east, fail it: still not enough (inconclusive, no change).
    inside_only = readings[:2]
    judgements = rounds([inside_only] * 5, sites=sites[:2])
    assert state_after(judgements) == OK and not any(j.changes for j in judgements)


def test_cut_off_site_does_not_count_and_says_so():
    # east is cut off and sees everything failing; control and west see prod-west fine.
    sites = [
        SiteReport("control", "control"),
        SiteReport("east", "east", True, "cannot reach its own probe host"),
        SiteReport("west", "west"),
    ]
    readings = reach("prod-west", control=OK, west=OK, east=FAILED)
    judgements = rounds([readings] * 5, sites=sites)
    assert state_after(judgements, "prod-west") == OK
    assert any("site east is cut off" in sentence for sentence in judgements[0].decisions)


def test_whole_facility_lost_is_declared_by_the_other_sites():
    sites = [
        SiteReport("control", "control"),
        SiteReport("east", "east", True, "cannot reach standby-east"),
        SiteReport("west", "west"),
    ]
    judgements = rounds([reach("prod-east", control=FAILED, west=FAILED, east=FAILED)] * 3, sites=sites)
    assert state_after(judgements) == FAILED
    assert judgements[-1].changes[0].sites == ("control", "west")


def test_recovery_needs_m_good_rounds_and_flapping_changes_nothing():
    down = rounds([reach("prod-east", control=FAILED, west=FAILED)] * 3)[-1].statuses
    good = reach("prod-east", control=OK, west=OK)
    bad = reach("prod-east", control=FAILED, west=FAILED)
    flapping = rounds([good, bad, good, bad, good, bad], previous=down)
    assert state_after(flapping) == FAILED and not any(j.changes for j in flapping)
    recovering = rounds([good, good], previous=down)
    assert [len(j.changes) for j in recovering] == [0, 1]
    assert recovering[-1].changes[0].event == "hotspare.health.recovered"


def test_nothing_conclusive_keeps_counters():
    sites = [SiteReport("control", "control", True, "reached none of its 8 targets"), SiteReport("west", "west", True, "x")]
    before = rounds([reach("prod-east", control=FAILED, west=FAILED)] * 2)[-1].statuses
    after = rounds([reach("prod-east", control=FAILED, west=FAILED)] * 4, sites=sites, previous=before)
    status = after[-1].statuses[("prod-east", "reachability:ssh")]
    assert status.state == OK and status.worse_rounds == 2


def test_single_source_hardware_degrades_then_fails_and_unknown_is_inconclusive():
    def psu(state):
        return [
            Reading(
                "prod-east",
                "power_supply:PS2",
                ComponentKind.power_supply,
                state,
                f"PS2 {state.value}",
                "control",
                {"slot": "PS2", "serial": "SN-2"},
            )
        ]

    judgements = rounds([psu(DEGRADED)] * 3 + [psu(UNKNOWN)] * 5 + [psu(FAILED)] * 3)
    events = [change.event for j in judgements for change in j.changes]
    assert events == ["hotspare.health.degraded", "hotspare.health.failed"]
    assert judgements[-1].statuses[("prod-east", "power_supply:PS2")].part["serial"] == "SN-2"


def test_site_report_cut_off_rules():
    failing = reach("a", east=FAILED) + reach("b", east=FAILED)
    assert site_report("east", "east", "timed out", []).cut_off
    assert site_report("east", "east", None, failing).cut_off
    assert not site_report("east", "east", None, failing[:1]).cut_off  # one target down is just that target
    assert not site_report("east", "east", None, failing + reach("c", east=OK)).cut_off


def test_worst_component_and_production_down():
    statuses = [
        ComponentStatus("s", "fan:Fan1", ComponentKind.fan, DEGRADED),
        ComponentStatus("s", "reachability:ssh", ComponentKind.reachability, FAILED),
        ComponentStatus("s", "space:/srv", ComponentKind.space, OK),
    ]
    assert worst_component(statuses).component == "reachability:ssh"
    assert worst_component(statuses[2:]) is None
    change = rounds([reach("prod-east", control=FAILED, west=FAILED)] * 3)[-1].changes[0]
    assert production_down(change, {"app1": "prod-east", "app2": "prod-west"}) == ["app1"]


def test_replacements_open_once_and_close_when_ok():
    fan = ComponentStatus(
        "prod-east", "fan:Fan1", ComponentKind.fan, DEGRADED, evidence="Fan1 1500 RPM", part={"slot": "Fan1", "serial": "FAN-77"}
    )
    raid = ComponentStatus("prod-east", "raid:/srv", ComponentKind.raid, DEGRADED)
    plan = plan_replacements([fan, raid], set())
    assert [status.component for status in plan.open] == ["fan:Fan1"]
    assert plan_replacements([fan], {fan.key}).open == ()
    healthy = ComponentStatus("prod-east", "fan:Fan1", ComponentKind.fan, OK)
    assert plan_replacements([healthy], {fan.key}).close == (fan.key,)
    request = request_for(fan, "east", "rack A3 U12")
    assert (request.slot, request.serial, request.location) == ("Fan1", "FAN-77", "rack A3 U12")
    assert SWAP_NOTE in request.body() and "FAN-77" in request.body() and "prod-east" in request.subject_line()


def test_a_site_votes_once_per_component():
    twice = [
        Reading("prod-east", "reachability:ssh", ComponentKind.reachability, FAILED, f"probe {n}", "control") for n in (1, 2)
    ]
    assert state_after(rounds([twice] * 5)) == OK


def test_a_missing_disk_keeps_what_was_last_seen_of_it_for_its_replacement():
    def disk(state, part):
        return [Reading("prod-west", "disk:devid 2", ComponentKind.disk, state, f"devid 2 {state.value}", "control", part)]

    present = {"devid": "2", "device": "/dev/loop7", "serial": "WD-1234"}
    judgements = rounds(
        [disk(OK, present), disk(FAILED, {"devid": "2"}), disk(FAILED, {"devid": "2"})],
        rules=Rules(failures_to_down=2, successes_to_recover=2),
    )
    status = judgements[-1].statuses[("prod-west", "disk:devid 2")]
    assert status.state == FAILED and status.part == present
    request = request_for(status, "west", "rack W3, U14")
    assert (request.serial, request.extra["device"]) == ("WD-1234", "/dev/loop7")
    [change] = judgements[-1].changes
    assert change.payload()["server"] == "prod-west" and change.payload()["evidence"] == "devid 2 failed"


def test_status_text_names_the_part_as_operators_do():
    from hotspare.planning.health import status_text

    assert (
        status_text(ComponentStatus("prod-east", "power_supply:PS2 Status", ComponentKind.power_supply, FAILED))
        == "psu PS2 failed"
    )
    assert status_text(ComponentStatus("prod-west", "disk:devid 2", ComponentKind.disk, FAILED)) == "disk devid 2 failed"
    assert (
        status_text(ComponentStatus("s", "temperature:Inlet Temp", ComponentKind.temperature, DEGRADED))
        == "temp Inlet Temp degraded"
    )
    assert (
        status_text(ComponentStatus("service:app1", "application:dns", ComponentKind.application, FAILED))
        == "application dns failed"
    )
