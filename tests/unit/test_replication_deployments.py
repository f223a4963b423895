"""One ``replicate`` deployment per schedule group, checked on the deployment objects that
``hotspare serve`` and ``hotspare deploy`` would apply (serving them is tests/test_deployments.py).
"""

from __future__ import annotations

from deployments.runbooks import OVERLAPPING_RUNS_TAG, replication_deployments
from test_replication_schedule import fleet_with


def schedules_of(deployment) -> list[tuple[str, str, dict]]:
    return [(schedule.schedule.cron, schedule.schedule.timezone, schedule.parameters) for schedule in deployment.schedules]


def test_a_fleet_of_default_rpos_keeps_one_replicate_all_on_the_crons():
    deployments = replication_deployments(fleet_with({"app1": None, "app2": 12}))
    assert [deployment.name for deployment in deployments] == ["replicate-all"]
    assert deployments[0].parameters == {}  # every service, as before
    assert schedules_of(deployments[0]) == [("0 1 * * *", "UTC", {}), ("0 13 * * *", "UTC", {})]


def test_each_interval_group_is_a_deployment_of_its_services():
    fleet = fleet_with({"app1": 5 / 60, "app2": 5 / 60, "app3": None, "app4": 1}, timezone="Europe/Berlin")
    deployments = {deployment.name: deployment for deployment in replication_deployments(fleet)}
    assert list(deployments) == ["replicate-all", "replicate-every-5m", "replicate-every-30m"]

    every_five = deployments["replicate-every-5m"]
    assert every_five.flow_name == "replicate"
    assert every_five.parameters == {"services": ["app1", "app2"]}
    assert schedules_of(every_five) == [("*/5 * * * *", "UTC", {})]
    assert deployments["replicate-every-30m"].parameters == {"services": ["app4"]}

    # the run button still replicates every service; its scheduled runs only those on the crons
    on_crons = deployments["replicate-all"]
    assert on_crons.parameters == {}
    assert schedules_of(on_crons) == [("0 1 * * *", "Europe/Berlin", {"services": ["app3"]}),
                                      ("0 13 * * *", "Europe/Berlin", {"services": ["app3"]})]
    assert all(OVERLAPPING_RUNS_TAG in deployment.tags for deployment in deployments.values())


def test_replicate_all_has_no_schedule_when_every_service_has_its_own_interval():
    deployments = {deployment.name: deployment for deployment in replication_deployments(fleet_with({"app1": 2}))}
    assert deployments["replicate-all"].schedules == []  # empty `services` would mean every service
    assert schedules_of(deployments["replicate-every-1h"]) == [("0 */1 * * *", "UTC", {})]
