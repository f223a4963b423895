"""``hotspare deploy`` and ``hotspare run``: the runbooks on work pools, one pool per facility.

    hotspare deploy [--facility F ...]        pools + every deployment on each pool (idempotent)
    hotspare run FLOW [SERVICE] [-p k=v ...]  submit to the right facility's pool, wait, report

``deploy`` creates a process work pool ``hotspare-<facility>`` for the control site and every
facility that holds a production or mirror server, and deploys every flow of
``deployments_for(fleet)`` (``deployments/*.py``) to the control site's pool, and the runbooks
that must work while it is lost (``deployments/catalog.py``) to each facility's, as ``<name>@<facility>``, with
the project folder as its source (``flow.from_source(source=<project>, entrypoint=...)``): a
worker on a machine that shares or holds a copy of that folder runs the code as it is there.
Schedules and per-deployment concurrency limits ride on the control site's copy only, so a
scheduled run is never made three times. Running it again updates everything in place.

Why one deployment per pool: a flow run belongs to its deployment's pool, and Prefect's
``run_deployment`` can pick a work queue of that pool but not another pool. A copy per pool
lets ``hotspare run`` choose the facility at submission (``planning/placement.py``: never the
facility the service runs in now), with plain ``run_deployment`` and no custom queue routing.

``hotspare serve`` stays the one-process mode (no pools, no workers).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hotspare.adapters.errors import MissingConfiguration, NotFound, PermanentError
from hotspare.commands.errors import RunFailed, remote_kind
from hotspare.commands.output import add_json_flag, print_json, progress, say
from hotspare.planning.approval import UP_FRONT_WINDOW_SECONDS
from hotspare.planning.work_pools import locked_job_template, operator_variable

PROJECT = Path(__file__).resolve().parents[2]
POOL_PREFIX = "hotspare-"
CONTROL = "control"
SCHEDULED_CONCURRENCY = 1  # a scheduled deployment never runs twice at once
POOL_CONCURRENCY = 8  # runs one facility's worker takes at a time


def register(subparsers) -> None:
    deploy = subparsers.add_parser("deploy", help="create the facilities' work pools and deploy every runbook to each")
    deploy.add_argument(
        "--facility",
        action="append",
        dest="facilities",
        metavar="FACILITY",
        help="deploy to this facility's pool (repeatable; default: control + every facility with a production or mirror server)",
    )
    deploy.add_argument(
        "--only",
        action="append",
        dest="flows",
        metavar="FLOW",
        help="deploy only this flow's deployments (repeatable; default: all)",
    )
    add_json_flag(deploy, "each pool with its deployments")
    deploy.set_defaults(func=deploy_command)
    run = subparsers.add_parser("run", help="run a deployed runbook on a worker outside the facility it recovers from")
    run.add_argument("flow", metavar="FLOW", help="flow name: failover, replicate, backup, …")
    run.add_argument("service", nargs="?", help="the service it acts on (sets the `service` parameter)")
    run.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another parameter; VALUE is read as JSON when it parses (true, 3, [..]), else text",
    )
    run.add_argument("--facility", help="run in this facility's pool instead of the chosen one")
    run.add_argument(
        "--timeout",
        type=float,
        default=900,
        help="seconds to wait for the run to end (default 900); a run not started by then is cancelled",
    )
    run.add_argument(
        "--approval-window",
        type=float,
        default=UP_FRONT_WINDOW_SECONDS,
        metavar="SECONDS",
        help="a pre-approved run (-p yes=true, -p approved_plan_digest=...) that has not started within "
        f"this many seconds ends cancelled (default {UP_FRONT_WINDOW_SECONDS})",
    )
    add_json_flag(run, "where the run went and how it ended")
    run.set_defaults(func=run_command)


def pool_name(facility: str) -> str:
    return f"{POOL_PREFIX}{facility}"


def deployment_facilities(fleet) -> list[str]:
    """Control plus every facility holding a production or mirror server, control first."""
    servers = {server.name: server.facility for server in fleet.servers}
    used = {servers[name] for service in fleet.services for name in (service.production, service.mirror) if name in servers}
    return [CONTROL] + sorted(used - {CONTROL})


def deploy_command(args: argparse.Namespace) -> int:
    from hotspare.access import loaded_fleet

    fleet = loaded_fleet()
    warn_unless_holder(fleet, "deploy")
    facilities = args.facilities or deployment_facilities(fleet)
    with progress(f"deploying every runbook to the pools of {', '.join(facilities)}"):
        applied = deploy_to_pools(fleet, facilities, flows=args.flows)
    pools = {
        pool_name(facility): sorted(name for name, pool in applied if pool == pool_name(facility)) for facility in facilities
    }
    if args.json:
        print_json({"pools": pools})
        return 0
    for pool, names in pools.items():
        say(f"{pool}: {len(names)} deployments ({', '.join(names)})")
    return 0


def deploy_to_pools(fleet, facilities: list[str], flows: list[str] | None = None) -> list[tuple[str, str]]:
    """Create the pools (if missing) and apply every deployment (of ``flows``, default all) to
    each; returns (name, pool)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.runner.storage import LocalStorage

    from deployments.catalog import runs_in_facility_pools
    from deployments.serve import all_deployments

    template = locked_job_template(str(PROJECT))  # a run's creator cannot change what the worker runs
    with get_client(sync_client=True) as client:
        for facility in facilities:
            try:
                client.create_work_pool(
                    WorkPoolCreate(
                        name=pool_name(facility),
                        type="process",
                        concurrency_limit=POOL_CONCURRENCY,
                        base_job_template=template,
                        description=f"hotspare runs executed in {facility}",
                    )
                )
            except ObjectAlreadyExists:  # a pool made before, maybe with Prefect's open template: lock it
                client.update_work_pool(pool_name(facility), WorkPoolUpdate(base_job_template=template))
    templates = [template for template in all_deployments(fleet) if not flows or template.flow_name in flows]
    applied = []
    for facility in facilities:
        for template in templates:
            if facility != CONTROL and not runs_in_facility_pools(template):
                continue  # backups, rebuilds, paging: the control site's credentials (deployments/catalog.py)
            deployment = template.model_copy(deep=True)
            deployment.name = f"{template.name}@{facility}"
            deployment.storage = LocalStorage(str(PROJECT))
            deployment.entrypoint = project_entrypoint(template.entrypoint)
            deployment.job_variables = {}  # the pool's template sets the environment
            if facility == CONTROL:
                # replication runs may overlap (deployments/runbooks.py): each service's lock keeps it exclusive
                deployment.concurrency_limit = (
                    SCHEDULED_CONCURRENCY if deployment.schedules and "overlapping-runs" not in deployment.tags else None
                )
            else:
                deployment.schedules = []
            deployment.apply(work_pool_name=pool_name(facility))
            applied.append((deployment.name, pool_name(facility)))
    return applied


def project_entrypoint(entrypoint: str) -> str:
    """``flows/x.py:function`` relative to the project folder (the deployments' source)."""
    path, _, function = entrypoint.rpartition(":")
    absolute = Path(path) if Path(path).is_absolute() else (Path.cwd() / path)
    try:
        return f"{absolute.resolve().relative_to(PROJECT)}:{function}"
    except ValueError as error:
        raise MissingConfiguration(f"flow entrypoint {entrypoint} lies outside the project folder {PROJECT}") from error


def parse_parameters(service: str | None, pairs: list[str]) -> dict:
    parameters = {"service": service} if service else {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            from hotspare.commands.errors import UsageError

            raise UsageError(f"--param {pair!r}: write KEY=VALUE")
        try:
            parameters[key] = json.loads(value)
        except ValueError:
            parameters[key] = value
    return parameters


def service_facilities(service: str | None) -> tuple[str | None, str | None]:
    """(facility the service runs in now, its mirror's facility) from the inventory."""
    if service is None:
        return None, None
    from hotspare.commands.running import require_service
    from hotspare.inventory import session
    from hotspare.inventory.models import ServerRow, ServiceRow

    require_service(service)
    with session() as db:
        row = db.get(ServiceRow, service)
        facility = {server: db.get(ServerRow, server) for server in (row.active_server, row.mirror_server or row.planned_mirror)}
        return (
            facility[row.active_server].facility if facility[row.active_server] else None,
            facility[row.mirror_server or row.planned_mirror].facility
            if facility[row.mirror_server or row.planned_mirror]
            else None,
        )


def warn_unless_holder(fleet, action: str) -> None:
    """Say so (stderr) when this shell's inventory does not hold the fleet: its runs would refuse.
    Only a warning: the runs check for themselves, with the inventory their workers use."""
    import sys

    from tasks.orchestrator import require_orchestrator

    decision = require_orchestrator(fleet, action, read_only=True)
    if decision.kind == "warn":
        print(f"warning: {decision.sentence}", file=sys.stderr)


class NoWorkerOnline(PermanentError):
    """A pre-approved run would wait in a pool no worker serves, and act whenever one starts."""


def run_command(args: argparse.Namespace) -> int:
    from hotspare.access import loaded_fleet

    warn_unless_holder(loaded_fleet(), f"run {args.flow}")
    parameters = parse_parameters(args.service, args.param)
    with progress(f"{args.flow}: submitted, waiting for the run to end (at most {args.timeout:g} s)"):
        outcome = submit(
            args.flow,
            parameters,
            facility=args.facility,
            timeout=args.timeout,
            approval_window=args.approval_window,
            quiet=args.json,
        )
    if args.json:
        print_json(outcome)
    else:
        say(
            f"{args.flow} run {outcome['flow_run']} ({outcome['deployment']}, pool {outcome['pool']}, worker "
            f"{outcome['worker'] or '-'}): {outcome['state']}" + (f": {outcome['message']}" if outcome["message"] else "")
        )
        say(f"placement: {outcome['placement']}")
    if outcome["state"] != "COMPLETED":
        raise RunFailed(
            f"{args.flow} run {outcome['flow_run']} in {outcome['pool']} ended {outcome['state']}: "
            f"{outcome['message']} (its logs are in the Prefect UI)",
            remote_kind(outcome["message"], outcome.get("entrypoint")),  # its exit code is the run's own kind
        )
    return 0


def pre_approved(parameters: dict) -> bool:
    """Whether the run would act without pausing for approval."""
    return parameters.get("yes") is True or bool(parameters.get("approved_plan_digest"))


def submit(
    flow_name: str,
    parameters: dict,
    facility: str | None = None,
    timeout: float = 900,
    approval_window: float = UP_FRONT_WINDOW_SECONDS,
    quiet: bool = False,
) -> dict:
    """Choose the pool, submit through the API, wait; return where it ran and how it ended.

    A pre-approved run is refused when no worker of the chosen pool is online (it would wait
    there and act whenever one starts, on facts nobody reviewed), and carries a deadline
    (``approval_expires_at``) its flow enforces. A run that has not started when ``timeout``
    ends is cancelled, so nothing is left queued.
    """
    from datetime import timedelta

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.deployments import run_deployment

    from hotspare.inventory.clock import database_now
    from hotspare.planning.placement import choose_facility

    with get_client(sync_client=True) as client:
        deployments = client.read_deployments(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))
        if not deployments:
            raise NotFound(
                f"no deployment of flow {flow_name!r} on the Prefect server: run `hotspare deploy` "
                f"(flows are named like failover, replicate, backup)"
            )
        by_facility: dict[str, list] = {}
        for deployment in deployments:
            if deployment.work_pool_name and deployment.work_pool_name.startswith(POOL_PREFIX):
                by_facility.setdefault(deployment.work_pool_name.removeprefix(POOL_PREFIX), []).append(deployment)
        online = {
            name: any(worker.status == "ONLINE" for worker in client.read_workers_for_work_pool(pool_name(name)))
            for name in by_facility
        }
    active, mirror = service_facilities(parameters.get("service"))
    if facility:
        placement_reason, chosen = f"runs in {facility} (asked for)", facility
    else:
        placement = choose_facility(active, mirror, online)
        placement_reason, chosen = placement.reason, placement.facility
    if chosen not in by_facility:
        from deployments.catalog import where_it_runs

        raise NotFound(
            f"no deployment of {flow_name} on pool {pool_name(chosen or '?')} ({placement_reason}): {where_it_runs(flow_name)}"
        )
    deployment = best_deployment(by_facility[chosen], parameters)
    if pre_approved(parameters):
        if not online.get(chosen):
            raise NoWorkerOnline(no_worker_sentence(flow_name, chosen, online))
        accepted = (deployment.parameter_openapi_schema or {}).get("properties") or {}
        if "approval_expires_at" in accepted and "approval_expires_at" not in parameters:
            # by the inventory's clock, which the worker's flow reads too (``inventory/clock.py``)
            parameters = {**parameters, "approval_expires_at": database_now(timedelta(seconds=approval_window)).isoformat()}
    import sys

    print(
        f"submitting {flow_name} {json.dumps(parameters)} to {deployment.name} ({placement_reason})",
        flush=True,
        file=sys.stderr if quiet else sys.stdout,
    )
    flow_run = run_deployment(
        deployment.id, parameters=parameters, timeout=timeout, poll_interval=1, job_variables=operator_environment(deployment)
    )
    state = flow_run.state
    if state is None or not state.is_final():
        state = give_up(flow_run, timeout)
    return {
        "flow_run": str(flow_run.id),
        "deployment": deployment.name,
        "entrypoint": deployment.entrypoint,
        "pool": flow_run.work_pool_name,
        "worker": worker_of(flow_run.id) if not state.is_cancelled() else None,
        "state": state.type.value if state else "UNKNOWN",
        "message": state.message if state else "",
        "placement": placement_reason,
    }


def operator_environment(deployment) -> dict:
    """The run's job variables: who submitted it (``HOTSPARE_OPERATOR``, else the login name),
    so the worker records that person as the run's operator, not the worker's own account. The
    only variable the pools' template takes (``planning/work_pools.py``)."""
    from hotspare.inventory.runs import current_operator

    return operator_variable(current_operator())


def no_worker_sentence(flow_name: str, chosen: str, online: dict[str, bool]) -> str:
    """Why a pre-approved run is not submitted, and where it could run instead."""
    others = [pool_name(name) for name, up in sorted(online.items()) if up]
    where = (
        f"pools with a worker online: {', '.join(others)} (choose one with --facility)"
        if others
        else "no pool has a worker online: start one (`hotspare lab up --workers` in the lab)"
    )
    return (
        f"not submitting a pre-approved {flow_name}: no worker of {pool_name(chosen)} is online, so the run would "
        f"wait there and act whenever one starts, on facts nobody reviewed then; {where}. Or submit it without "
        "yes=true and approve it in the Prefect UI when it runs; nothing was submitted"
    )


def give_up(flow_run, timeout: float):
    """The run did not end within ``timeout``: cancel it if it has not started acting (queued,
    starting, or paused at its approval gate), so no worker picks it up later; a running one is
    left to finish (half a failover is worse than a whole one). Returns its state now."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled, Cancelling

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run.id).state
        if state.is_final():
            return state
        if state.is_scheduled() or state.is_pending() or state.is_paused():
            reason = (
                f"cancelled by `hotspare run`: not finished {timeout:g} s after submission and still "
                f"{state.name}; cancelled so that no worker acts on it later. Nothing was changed"
            )
            # A paused run has a process waiting at its gate: Cancelling lets its worker stop it.
            proposed = Cancelling(message=reason) if state.is_paused() else Cancelled(message=reason)
            client.set_flow_run_state(flow_run.id, proposed)  # orchestrated: a run that just started is not overwritten
            return client.read_flow_run(flow_run.id).state
    return state


def best_deployment(candidates: list, parameters: dict):
    """The pool's deployment for these parameters: one fixed to the same service, else a general one."""
    service = parameters.get("service")
    fixed = [deployment for deployment in candidates if service and (deployment.parameters or {}).get("service") == service]
    general = [deployment for deployment in candidates if "service" not in (deployment.parameters or {})]
    return (fixed or general or candidates)[0]


def worker_of(flow_run_id, seconds: float = 10) -> str | None:
    """The worker that submitted the run, from the server's ``prefect.worker.submitted-flow-run``
    event (events are written a moment after the fact: polled for a few seconds)."""
    import time

    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + seconds
    with get_client(sync_client=True) as client:
        while True:
            response = client.request(
                "POST",
                "/events/filter",
                json={
                    "filter": {
                        "any_resource": {"id": [f"prefect.flow-run.{flow_run_id}"]},
                        "event": {"name": ["prefect.worker.submitted-flow-run"]},
                    },
                    "limit": 5,
                },
            )
            for event in response.json().get("events", []):
                return event["resource"].get("prefect.resource.name")
            if time.monotonic() > deadline:
                return None
            time.sleep(0.5)
