"""The fence's decisions when an app outlives its stop command (``planning/fencing.py``)."""

from __future__ import annotations

from hotspare.fleet import parse_fleet
from hotspare.fleet.sample import sample_fleet_file
from hotspare.planning import fencing


def sample():
    return parse_fleet(sample_fleet_file(), "sample.yaml")


def test_declared_users_are_killed_by_their_uids_never_root():
    fleet = sample()
    spec = fleet.services[0].model_copy(
        update={"accounts": fleet.services[0].accounts.model_copy(update={"users": ["web", "worker"]}), "run_as": "web"}
    )
    uids = fencing.parse_uids(
        "root:x:0:0::/root:/bin/sh\nweb:x:4001:4001::/:/bin/sh\nworker:x:4002:4002::/:/bin/sh\ngarbage line\nweb::notanumber\n",
        ["web", "worker", "root"],
    )
    assert uids == {"root": 0, "web": 4001, "worker": 4002}
    kill = fencing.kill_service_processes(spec, uids)
    assert kill is not None and kill.argv[:2] == ["sh", "-c"]
    assert kill.argv[4:] == ["0", "0", "4001", "4002"], "root (UID 0) is never among the UIDs killed"


def test_a_service_without_declared_users_is_killed_by_its_uid_range():
    fleet = sample()
    spec = fleet.services[0].model_copy(
        update={
            "accounts": fleet.services[0].accounts.model_copy(update={"users": [], "uid_min": 4000, "uid_max": 4999}),
            "run_as": None,
        }
    )
    kill = fencing.kill_service_processes(spec)
    assert kill is not None and kill.argv[4:] == ["4000", "4999"] and "4000-4999" in kill.covers


def test_an_app_running_as_root_cannot_be_killed_by_account():
    fleet = sample()
    spec = fleet.services[0].model_copy(update={"run_as": "root"})
    assert fencing.kill_service_processes(spec) is None


def test_neighbours_are_the_other_services_on_that_server():
    fleet = sample()
    first = fleet.services[0]
    expected = sorted(
        other.name
        for other in fleet.services
        if other.name != first.name and first.production in (other.production, other.mirror)
    )
    assert fencing.neighbours(fleet, first.name, first.production) == expected
    assert first.name not in fencing.neighbours(fleet, first.name, first.production)
