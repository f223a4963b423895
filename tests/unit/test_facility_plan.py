"""The facility failover and return planners: plain inputs, no lab, no Prefect."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from hotspare.planning.facility import (
    ServiceStanding,
    plan_facility_failover,
    plan_facility_return,
    summary_markdown,
)
from hotspare.planning.failover import CopyChoice, ServiceFacts, plan_failover

NOW = datetime(2030, 5, 1, 12, 0, tzinfo=timezone.utc)
FACILITY_OF = {"p1": "east", "p2": "east", "p3": "east", "m1": "west", "m2": "west", "pw": "west", "me": "east", "px": "east"}


def standing(
    name,
    production="p1",
    mirror="m1",
    tier=2,
    depends_on=(),
    state="protected",
    copy_age_hours=1.0,
    verified=True,
    planned_production=None,
    previous=None,
    copy="c1",
):
    addresses = {server: f"10.0.0.{index}" for index, server in enumerate(sorted(FACILITY_OF), 1)}
    copies = [
        CopyChoice(
            f"{name}-{copy}", "verified" if verified else "copied", NOW - timedelta(hours=copy_age_hours), "/srv/hotspare/x"
        )
    ]
    facts = ServiceFacts(
        service=name,
        state=state,
        active_server=production,
        mirror_server=mirror,
        dns_name=f"{name}.test",
        addresses=addresses,
        dns_answer=[addresses[production]],
        copies=copies,
    )
    plan = plan_failover(facts, planned=False, now=NOW) if FACILITY_OF[production] == "east" else None
    return ServiceStanding(
        service=name,
        tier=tier,
        depends_on=tuple(depends_on),
        state=state,
        production=production,
        production_facility=FACILITY_OF[production],
        mirror=mirror,
        mirror_facility=FACILITY_OF.get(mirror),
        planned_production=planned_production or production,
        planned_production_facility=FACILITY_OF[planned_production or production],
        previous_production=previous,
        previous_production_facility=FACILITY_OF.get(previous),
        failover_plan=plan,
    )


STANDBYS = {"standby-east": "east", "standby-west": "west"}


def test_moves_only_services_with_production_in_the_facility_tier_first():
    plan = plan_facility_failover(
        "east",
        [
            standing("web", tier=2),
            standing("db", production="p2", mirror="m2", tier=1),
            standing("other", production="pw", mirror="m2"),
        ],
        STANDBYS,
    )
    assert [[m.service for m in wave.moves] for wave in plan.waves] == [["db"], ["web"]]
    assert [wave.tier for wave in plan.waves] == [1, 2]
    assert plan.refusal is None and not plan.unprotected and not plan.rebuild
    assert {m.service: (m.source, m.target) for m in plan.moves} == {"db": ("p2", "m2"), "web": ("p1", "m1")}


def test_dependencies_come_first_and_are_promoted_to_the_dependents_tier():
    plan = plan_facility_failover(
        "east",
        [
            standing("app", tier=1, depends_on=["db", "cache"]),
            standing("db", production="p2", mirror="m2", tier=3),
            standing("cache", production="p3", mirror="m2", tier=1),
            standing("batch", production="p3", mirror="m1", tier=1),
        ],
        STANDBYS,
    )
    assert [[m.service for m in wave.moves] for wave in plan.waves] == [["batch", "cache", "db"], ["app"]]
    assert all(wave.tier == 1 for wave in plan.waves)
    assert any("db (tier 3) moves with tier 1" in warning and "app" in warning for warning in plan.warnings)


def test_a_cycle_refuses_the_plan():
    plan = plan_facility_failover(
        "east", [standing("a", depends_on=["b"]), standing("b", production="p2", depends_on=["a"])], STANDBYS
    )
    assert plan.refusal and "dependency cycle" in plan.refusal and not plan.waves


def test_mirror_in_the_facility_is_unprotected_and_unusable_mirror_goes_to_rebuild():
    plan = plan_facility_failover(
        "east",
        [
            standing("app2", production="pw", mirror="me"),
            standing("both-lost", production="p1", mirror="px"),
            standing("stale", production="p2", mirror="m1", copy_age_hours=48),
            standing("nocopy", production="p3", mirror="m2", verified=False),
        ],
        STANDBYS,
    )
    assert not plan.moves
    assert [(u.service, u.production, u.mirror) for u in plan.unprotected] == [("app2", "pw", "me")]
    assert "unprotected: mirror facility east lost" in plan.unprotected[0].sentence("east")
    offers = {offer.service: offer for offer in plan.rebuild}
    assert set(offers) == {"both-lost", "stale", "nocopy"}
    assert "in facility east too" in offers["both-lost"].reason
    assert offers["stale"].commands()[0] == "hotspare rebuild stale --standby standby-west"  # never a standby in east
    assert offers["stale"].force_possible and "--force" in offers["stale"].commands()[1]
    markdown = plan.markdown()
    assert "Rebuild path (offered, not run)" in markdown and "app2" in markdown and plan.digest in markdown


def test_one_digest_binds_every_service_plan_and_the_parallelism():
    services = [standing("a"), standing("b", production="p2")]
    first = plan_facility_failover("east", services, STANDBYS)
    assert plan_facility_failover("east", services, STANDBYS).digest == first.digest
    assert plan_facility_failover("east", services, STANDBYS, parallelism=2).digest != first.digest
    newer_copy = [standing("a", copy_age_hours=0.5, copy="c2"), standing("b", production="p2")]
    changed = plan_facility_failover("east", newer_copy, STANDBYS)
    assert changed.moves[0].plan_digest != first.moves[0].plan_digest and changed.digest != first.digest
    assert first.service == "facility east" and f"`{first.digest}`" in first.markdown()


def test_nothing_in_the_facility_is_refused():
    plan = plan_facility_failover("vault", [standing("a")], STANDBYS)
    assert plan.refusal and "nothing to fail over" in plan.refusal
    with pytest.raises(ValueError):
        plan_facility_failover("east", [], STANDBYS, parallelism=0)


def test_summary_lists_every_outcome_with_rto_and_advice():
    plan = plan_facility_failover(
        "east", [standing("a", tier=1), standing("b", production="p2"), standing("u", production="pw", mirror="me")], STANDBYS
    )
    text = summary_markdown(
        plan,
        {
            "a": {"outcome": "ok", "rto_seconds": 4.2, "since_approval_seconds": 5.0},
            "b": {"outcome": "failed", "detail": "b: facts changed since plan x was approved", "state": "protected"},
        },
        9.5,
    )
    assert "| a | 1 | ok | 4.2 | 5.0 | - |" in text
    assert "| b | 2 | failed |" in text and "review and approve the new one" in text
    assert "unprotected: mirror facility east lost" in text and "hotspare facility return east" in text


def test_return_reprotects_former_productions_and_brings_mirrors_back_then_offers_failback():
    standings = [
        standing("app1", production="m1", mirror=None, state="failed-over", tier=1, planned_production="p1", previous="p1"),
        standing("app2", production="pw", mirror="me", state="unprotected"),
        standing("calm", production="pw", mirror="m2"),
    ]
    plan = plan_facility_return("east", standings)
    assert [(r.service, r.production, r.new_mirror, r.why, r.fence_first) for r in plan.reprotections] == [
        ("app1", "m1", "p1", "former production", True),
        ("app2", "pw", "me", "mirror back", True),
    ]
    assert [offer.command for offer in plan.failbacks] == ["hotspare failback app1"]
    assert "tier 1" in plan.markdown() and "hotspare failback app1" in plan.markdown()


def test_fleet_rule_depends_on_names_known_services_without_cycles():
    import copy
    from pathlib import Path

    import yaml

    from hotspare.fleet.load import FleetError, parse_fleet

    data = yaml.safe_load((Path(__file__).parents[2] / "docs" / "fleet-example.yaml").read_text())
    first = data["services"][0]
    second = copy.deepcopy(first)
    second.update(
        name="app2",
        dns_name=first["dns_name"].replace("app1", "app2"),
        data_paths=["/srv/app2/data"],
        app_paths=["/srv/app2/app"],
        config_paths=["/etc/app2"],
        accounts={"files": ["/srv/app2/accounts"], "uid_min": 3000, "uid_max": 3999},
        exclude=[],
        allow_special=[],
    )
    second.get("backup", {}).pop("repository", None)
    data["services"].append(second)
    first["depends_on"], second["depends_on"] = ["app2", "ghost", "app1"], ["app1"]
    with pytest.raises(FleetError) as caught:
        parse_fleet(yaml.safe_dump(data), "fleet.yaml")
    text = str(caught.value)
    assert "services.0.depends_on: dependency cycle: app1 -> app2 -> app1" in text
    assert "services.0.depends_on.1: unknown service 'ghost'" in text
    assert "services.0.depends_on.2: 'app1' cannot depend on itself" in text
    first["depends_on"], second["depends_on"] = ["app2"], []
    assert parse_fleet(yaml.safe_dump(data), "fleet.yaml").services[0].depends_on == ["app2"]
