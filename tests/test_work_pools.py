"""hotspare's work pools take no command or environment from whoever creates a run
(``planning/work_pools.py``): checked against a real Prefect API (the server refuses the job
variable) and Prefect's own worker configuration builder (nothing unknown reaches the process)."""

from __future__ import annotations

import uuid

import pytest

from hotspare.planning.work_pools import locked_job_template, operator_variable

PROJECT = "/opt/hotspare"


@pytest.fixture
def locked_deployment(prefect_api):
    """A deployment in a pool with the locked template (names unique: the session database keeps them)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    suffix = uuid.uuid4().hex[:8]
    with get_client(sync_client=True) as client:
        pool = client.create_work_pool(
            WorkPoolCreate(name=f"locked-{suffix}", type="process", base_job_template=locked_job_template(PROJECT))
        )
        flow_id = client.create_flow_from_name(f"locked-flow-{suffix}")
        deployment_id = client.create_deployment(
            flow_id, f"locked-{suffix}", work_pool_name=pool.name, entrypoint="flows/readiness.py:readiness"
        )
    yield deployment_id


def test_the_server_refuses_a_command_or_environment_from_a_runs_creator(locked_deployment):
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    with get_client(sync_client=True) as client:
        for variables in (
            {"command": "sh -c id"},
            {"env": {"HOTSPARE_SSH_ISSUER_URL": "http://elsewhere"}},
            {"working_dir": "/tmp"},
            {"operator": "x; $(id)"},
        ):
            with pytest.raises(PrefectHTTPStatusError) as refused:
                client.create_flow_run_from_deployment(locked_deployment, job_variables=variables)
            assert refused.value.response.status_code == 422, variables
        run = client.create_flow_run_from_deployment(locked_deployment, job_variables=operator_variable("Dana Ops"))
        assert run.job_variables == {"operator": "Dana Ops"}
        client.delete_flow_run(run.id)


def test_the_worker_builds_the_same_command_whatever_it_is_sent(prefect_api):
    import asyncio

    from prefect.workers.process import ProcessJobConfiguration

    configuration = asyncio.run(
        ProcessJobConfiguration.from_template_and_values(
            locked_job_template(PROJECT),
            {"operator": "Dana Ops", "command": "sh -c id", "env": {"LD_PRELOAD": "/x.so"}, "working_dir": "/tmp"},
        )
    )
    assert configuration.command is None and configuration.working_dir is None
    # Prefect's worker merges an ``env`` it is sent into the template's: only the server's
    # refusal (the test above) keeps a run's creator from setting the environment
    assert configuration.env["PYTHONPATH"] == PROJECT and configuration.env["HOTSPARE_OPERATOR"] == "Dana Ops"


def test_a_submitters_name_is_made_to_fit_the_template():
    assert operator_variable("Dana Ops") == {"operator": "Dana Ops"}
    assert operator_variable("dana$(id)\n") == {"operator": "dana--id--"}
    assert len(operator_variable("x" * 200)["operator"]) == 64
