"""One ``replicate`` deployment per schedule group, checked on the deployment objects that
``hotspare serve`` and ``hotspare deploy`` would apply (serving them is tests/test_deployments.py).
"""

from __future__ import annotations

import json

import pytest
from test_replication_schedule import fleet_with

from deployments.runbooks import OVERLAPPING_RUNS_TAG, replication_deployments


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
    assert schedules_of(on_crons) == [
        ("0 1 * * *", "Europe/Berlin", {"services": ["app3"]}),
        ("0 13 * * *", "Europe/Berlin", {"services": ["app3"]}),
    ]
    assert all(OVERLAPPING_RUNS_TAG in deployment.tags for deployment in deployments.values())


def test_replicate_all_has_no_schedule_when_every_service_has_its_own_interval():
    deployments = {deployment.name: deployment for deployment in replication_deployments(fleet_with({"app1": 2}))}
    assert deployments["replicate-all"].schedules == []  # empty `services` would mean every service
    assert schedules_of(deployments["replicate-every-1h"]) == [("0 */1 * * *", "UTC", {})]


def test_every_deployment_has_a_group_tag_and_a_description_and_failback_exists():
    from deployments.catalog import GROUPS, runs_in_facility_pools
    from deployments.serve import all_deployments

    deployments = all_deployments(fleet_with({"app1": None, "app2": 12}))
    names = {f"{deployment.flow_name}/{deployment.name}" for deployment in deployments}
    assert {"failback/failback", "facility-return/facility-return", "failover/failover"} <= names
    for deployment in deployments:
        assert deployment.tags[0] in GROUPS, deployment.name
        assert deployment.description and deployment.description.strip().endswith("."), deployment.name
    groups = [GROUPS.index(deployment.tags[0]) for deployment in deployments]
    assert groups == sorted(groups)  # recovery first
    failback = next(deployment for deployment in deployments if deployment.flow_name == "failback")
    assert failback.tags[0] == "recovery"
    properties = (
        failback._parameter_openapi_schema.properties
        if hasattr(failback, "_parameter_openapi_schema")
        else failback.parameter_openapi_schema.properties
    )
    assert all(schema.get("description") for schema in properties.values())
    # a facility pool carries what must work without the control site, not backups or paging
    on_facilities = {deployment.flow_name for deployment in deployments if runs_in_facility_pools(deployment)}
    assert {"failover", "failback", "facility-return", "replicate"} <= on_facilities
    assert not on_facilities & {"backup", "rebuild", "incident-page", "restore-proof"}
    assert len(on_facilities) < len({deployment.flow_name for deployment in deployments})


def test_a_deployment_without_a_group_is_refused_by_name():
    from prefect import flow

    from deployments.catalog import UnorganisedDeployment, organise
    from flows.failback import failback

    @flow(name="unlisted")
    def unlisted() -> None:
        """A runbook nobody placed in a group."""

    with pytest.raises(UnorganisedDeployment, match="unlisted/bare: add its flow to GROUP_OF_FLOW"):
        organise([unlisted.to_deployment(name="bare"), failback.to_deployment(name="failback", description="Back.")])
