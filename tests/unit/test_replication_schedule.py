"""Replication schedules derived from each service's RPO (pure planner, no lab).

Fleets are the hand-written test fleet file with services added by copying app1 under new
names and RPOs, so every fleet here is one an operator could load.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hotspare.fleet.load import parse_fleet
from hotspare.planning.replication_schedule import (
    cron_cadence_minutes,
    interval_for,
    plan_replication_schedule,
    replications_per_day_of,
)

BASIC = Path(__file__).resolve().parents[1] / "data" / "fleet-basic.yaml"


def fleet_with(
    rpos: dict[str, float | None],
    crons: list[str] | None = None,
    timezone: str = "UTC",
    replications_per_day: float | None = None,
):
    """The test fleet with one service per entry of ``rpos`` (None: the fleet's default RPO),
    each a copy of app1 with its own paths, DNS name and port so the fleet stays valid."""
    document = yaml.safe_load(BASIC.read_text())
    template = document["services"][0]
    services = []
    for number, (name, rpo) in enumerate(rpos.items()):
        text = yaml.safe_dump(template).replace("app1", name)
        service = yaml.safe_load(text)
        service["app_port"] = 8080 + number
        # each its own UID range: services on one server never claim the same accounts
        service["accounts"] = {**service.get("accounts", {}), "uid_min": 10000 + 100 * number, "uid_max": 10099 + 100 * number}
        service.pop("rpo_hours", None)
        if rpo is not None:
            service["rpo_hours"] = rpo
        services.append(service)
    document["services"] = services
    if crons is not None:
        document["defaults"]["replication_schedule"] = crons
    document["defaults"]["timezone"] = timezone
    if replications_per_day is not None:
        document["replication"] = {"replications_per_day": replications_per_day}
    return parse_fleet(yaml.safe_dump(document, sort_keys=False), "fleet.yaml")


def test_default_rpo_services_stay_on_the_fleet_crons_twice_a_day():
    plan = plan_replication_schedule(fleet_with({"app1": None, "app2": 12}, timezone="Europe/Berlin"))
    assert [group.name for group in plan.groups] == ["replicate-all"]
    group = plan.groups[0]
    assert group.services == ("app1", "app2")
    assert group.cron_lines == ("0 1 * * *", "0 13 * * *") and group.timezone == "Europe/Berlin"
    assert plan.cadence_minutes == 720
    assert group.replications_per_day == 2.0
    assert plan.services[0].sentence.startswith("app1: RPO 12 h → the fleet's crons 0 1 * * *, 0 13 * * *")


def test_a_five_minute_rpo_is_replicated_every_five_minutes_beside_twice_a_day_services():
    plan = plan_replication_schedule(fleet_with({"app1": 5 / 60, "app2": 12, "app3": None}))
    by_name = {group.name: group for group in plan.groups}
    assert set(by_name) == {"replicate-all", "replicate-every-5m"}
    assert plan.groups[0].name == "replicate-all"  # the crons' group first: the run button's default
    fast = by_name["replicate-every-5m"]
    assert fast.services == ("app1",) and fast.cron_lines == ("*/5 * * * *",) and fast.timezone == "UTC"
    assert fast.replications_per_day == 288
    assert by_name["replicate-all"].services == ("app2", "app3")
    sentence = plan.services[0].sentence
    assert sentence.startswith("app1: RPO 5 min → every 5 min (copy age peaks at ~5 min + one replication")
    assert "one failed or skipped run leaves the copy ~10 min old" in sentence
    assert not plan.services[0].within_rpo_after_one_failure


def test_a_hundred_five_minute_services_are_one_group():
    small = fleet_with({"fast": 5 / 60, "slow": 12})
    fast_service, slow_service = small.services
    # copies of one validated service (validating 100 services' path rules costs seconds, not the point here)
    services = [fast_service.model_copy(update={"name": f"svc{number:03d}"}) for number in range(100)]
    plan = plan_replication_schedule(small.model_copy(update={"services": [*services, slow_service]}))
    fast = plan.group_of("svc042")
    assert fast.name == "replicate-every-5m" and len(fast.services) == 100
    assert plan.group_of("slow").name == "replicate-all"
    assert len(plan.groups) == 2


@pytest.mark.parametrize(
    ("rpo_hours", "minutes"),
    [
        (1 / 60, 5),
        (5 / 60, 5),
        (10 / 60, 5),
        (0.5, 15),
        (1, 30),
        (2, 60),
        (3, 60),
        (6, 180),
        (11, 240),
    ],
)
def test_interval_is_half_the_rpo_rounded_down_to_a_step_and_never_under_five_minutes(rpo_hours, minutes):
    assert interval_for(rpo_hours * 60) == minutes
    plan = plan_replication_schedule(fleet_with({"app1": rpo_hours}))
    assert plan.group_of("app1").interval_minutes == minutes
    assert plan.services[0].within_rpo_after_one_failure == (2 * minutes <= rpo_hours * 60 + 1e-9)


def test_hour_intervals_get_clock_aligned_cron_lines_and_group_names():
    plan = plan_replication_schedule(fleet_with({"app1": 4, "app2": 1, "app3": 6}))
    assert [(group.name, group.cron_lines, group.services) for group in plan.groups[1:]] == [
        ("replicate-every-30m", ("*/30 * * * *",), ("app2",)),
        ("replicate-every-2h", ("0 */2 * * *",), ("app1",)),
        ("replicate-every-3h", ("0 */3 * * *",), ("app3",)),
    ]
    assert plan.groups[0].services == ()  # no service left on the crons: its deployment gets no schedule


def test_a_long_rpo_stays_on_the_crons_and_crons_faster_than_the_rpo_keep_everyone():
    assert plan_replication_schedule(fleet_with({"app1": 72})).group_of("app1").name == "replicate-all"
    hourly = fleet_with({"app1": 1, "app2": 0.5}, crons=["0 * * * *"])
    plan = plan_replication_schedule(hourly)
    assert plan.cadence_minutes == 60
    assert plan.group_of("app1").name == "replicate-all"  # hourly crons already meet a 1 h RPO
    assert plan.group_of("app2").name == "replicate-every-15m"


def test_weekly_crons_give_long_rpo_services_their_own_interval():
    plan = plan_replication_schedule(fleet_with({"app1": 72, "app2": None}, crons=["0 3 * * 1"]))
    assert plan.cadence_minutes == 7 * 1440
    assert plan.group_of("app1").name == "replicate-every-24h"
    assert plan.group_of("app1").cron_lines == ("0 0 * * *",)
    assert plan.group_of("app2").name == "replicate-every-6h"  # default 12 h RPO, crons a week apart


def test_cron_cadence_is_the_longest_gap_between_firings():
    assert cron_cadence_minutes(["0 1 * * *", "0 13 * * *"]) == 720
    assert cron_cadence_minutes(["0 1 * * *", "0 5 * * *"]) == 20 * 60
    assert cron_cadence_minutes(["*/5 * * * *"]) == 5
    assert cron_cadence_minutes(["0 3 * * 1-5"]) == 3 * 1440  # Friday to Monday
    with pytest.raises(ValueError, match="'every day' is not a cron line"):
        cron_cadence_minutes(["every day"])


def test_replications_per_day_for_the_verification_slice():
    fleet = fleet_with({"app1": 5 / 60, "app2": 1, "app3": None}, replications_per_day=3)
    assert replications_per_day_of(fleet, "app1") == 288
    assert replications_per_day_of(fleet, fleet.service("app2")) == 48
    assert replications_per_day_of(fleet, "app3") == 3  # on the crons: the fleet's own figure
    with pytest.raises(KeyError, match="nosuch"):
        replications_per_day_of(fleet, "nosuch")


def test_hotspare_schedule_shows_each_group_and_why(tmp_path, capsys):
    from hotspare.cli import main

    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(BASIC.read_text().replace("    rpo_hours: 12\n", "    rpo_hours: 0.25\n"))
    assert main(["schedule", str(fleet_file)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "replicate-every-5m: app1 every 5 min (*/5 * * * *, UTC)" in lines
    assert "  app1: RPO 15 min → every 5 min (copy age peaks at ~5 min + one replication) [replicate-every-5m]" in lines

    fleet_file.write_text(BASIC.read_text().replace('"0 13 * * *"]', '"at noon"]'))
    assert main(["schedule", str(fleet_file)]) == 2
    # the fleet check refuses it first, with its line, by the same parser (fleet/values.py)
    assert "defaults.replication_schedule.1: 'at noon' is not a usable cron line" in capsys.readouterr().err
