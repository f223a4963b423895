"""Drill steps: thin tasks that run the argument lists of ``hotspare/planning/drill.py`` on the
drill host over SSH and report what they saw. Each gets the fleet the runbook loaded at its start
(never the inventory's again), so a drill acts on one version of the fleet. Teardown and its proof never raise for what they
find: they return what is left, so the flow can record it and raise an incident.
"""

from __future__ import annotations

import time
from dataclasses import replace

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from hotspare import access
from hotspare.adapters.errors import PermanentError
from hotspare.fleet import Fleet
from hotspare.fleet.context import ServiceContext
from hotspare.inventory import copies
from hotspare.planning import drill as planning
from hotspare.planning.containment import each_argv
from hotspare.planning.replication import source_paths

QUICK = dict(cache_policy=NO_CACHE)
KILL_WAIT_SECONDS = 10.0


@task(name="gather drill facts", **QUICK)
def gather_drill_facts(context: ServiceContext) -> tuple[planning.DrillFacts, str]:
    """The service as loaded, its newest verified copy on its mirror and the copy's passwd (the
    mirror's own passwd and every other service's paths too: the drill's view needs them)."""
    fleet, service = context.fleet, context.name
    row = copies.service_row(service)
    mirror = row.mirror_server
    newest = copies.newest_verified(service, mirror) if mirror else None
    others = tuple(path for other in fleet.services if other.name != service for path in source_paths(other.model_dump()))
    facts = planning.DrillFacts(
        service=service,
        spec=row.spec,
        state=row.state,
        mirror=mirror,
        production_address=fleet.server(row.active_server).address,
        host_address=fleet.server(mirror).address if mirror else None,
        copy_id=newest.id if newest else None,
        copy_started=newest.started_at if newest else None,
        other_paths=others,
    )
    if newest is None:
        return facts, ""
    tree = planning.copy_tree(service, newest.id)
    with access.connect(fleet, mirror) as host:
        if host.run(["test", "-d", tree], check=False).exit_status != 0:
            raise PermanentError(
                f"copy {newest.id} of {service} is in the inventory but not on {mirror} ({tree}): "
                f"run `hotspare verify {service}` to bring the inventory up to date"
            )
        passwd = host.run(["cat", "--", tree + "/etc/passwd"], check=False).text
        mirror_passwd = host.run(["cat", "--", "/etc/passwd"], check=False).text
    return replace(facts, mirror_passwd=mirror_passwd), passwd


def run_all(fleet: Fleet, host: str, argvs: list[list[str]], *, stdin: bytes | None = None, timeout: float = 120.0) -> list[str]:
    """Run each argument list on ``host`` in order (each must succeed); their outputs."""
    with access.connect(fleet, host) as connection:
        return [connection.run(argv, stdin=stdin, timeout=timeout).text for argv in argvs]


@task(name="write drill manifest", **QUICK)
def write_manifest(fleet: Fleet, plan: planning.DrillPlan) -> None:
    run_all(fleet, plan.host, [planning.manifest_argv(plan)], stdin=plan.manifest_text().encode())


@task(name="make bubble", **QUICK)
def make_bubble(fleet: Fleet, plan: planning.DrillPlan) -> int:
    """Network namespace with its veth pair and the production address, scratch folders, holder.
    Returns the holder's PID."""
    run_all(fleet, plan.host, [*planning.bubble_argvs(plan), planning.scratch_argv(plan)])
    [output] = run_all(fleet, plan.host, [planning.holder_argv(plan)], timeout=30)
    holder = int(output.strip())
    get_run_logger().info(
        "bubble %s on %s: %s/32 on %s, holder pid %d", plan.netns, plan.host, plan.production_address, planning.INSIDE, holder
    )
    return holder


@task(name="mount copy", **QUICK)
def mount_copy(fleet: Fleet, plan: planning.DrillPlan, holder: int) -> dict:
    """In the holder's mount namespace only: the memory-only scratch, the writable copy, the view
    of the whole filesystem with the service's paths in it; then the view's audit. Raises when
    the view has a mount that could let the app write to the mirror (the app is never started)."""
    logger = get_run_logger()
    with access.connect(fleet, plan.host) as connection:
        mountinfo = connection.run(planning.mountinfo_argv(holder)).text
        connection.run(
            each_argv(
                [
                    *planning.scratch_tmpfs_argvs(plan, holder),
                    *planning.workspace_argvs(plan, holder),
                    *planning.view_argvs(plan, holder, mountinfo),
                ]
            )
        )  # one round trip
        found = planning.audit_view(plan, connection.run(planning.mountinfo_argv(holder)).text)
    if found:
        raise PermanentError(f"the drill's view of {plan.host} is not contained, the app was not started: " + "; ".join(found))
    assert plan.identity is not None
    logger.info(
        "copy %s mounted in the bubble (%s) over %s; the view's every writable mount is the drill's own "
        "memory-only scratch; the app runs as %s",
        plan.copy_id,
        plan.method,
        ", ".join(plan.paths),
        plan.identity.describe(),
    )
    return {
        "run_as": plan.identity.name,
        "uid": plan.identity.uid,
        "gid": plan.identity.gid,
        "user_namespace": True,
        "writable_outside_scratch": found,
        "masked": list(plan.masks),
    }


@task(name="start app in bubble", **QUICK)
def start_app(fleet: Fleet, plan: planning.DrillPlan, holder: int) -> int:
    run_all(fleet, plan.host, planning.activate_argvs(plan, holder))
    return len(plan.activate)


@task(name="health check in bubble", **QUICK)
def wait_healthy(fleet: Fleet, plan: planning.DrillPlan, holder: int, seconds: float = 30.0) -> planning.Decision:
    """Probe the health URL inside the bubble until it answers 2xx or ``seconds`` pass."""
    if not plan.health_url:
        return planning.Decision(True, "no health_url: the app's start commands succeeded")
    answers: list[str] = []
    deadline = time.monotonic() + seconds
    with access.connect(fleet, plan.host) as connection:
        while True:
            answers.append(connection.run(planning.health_argv(plan, holder), check=False, timeout=10).text.strip() or "000")
            decision = planning.judge_health(answers)
            if decision.go or time.monotonic() > deadline:
                return decision
            time.sleep(0.1)


@task(name="canary login", **QUICK)
def canary_login(fleet: Fleet, plan: planning.DrillPlan, holder: int) -> str:
    """``su`` to the service's account inside the bubble, with the copy's account files."""
    if not plan.canary_users:
        return "skipped: the copy holds no account of the service"
    user = plan.canary_users[0]
    with access.connect(fleet, plan.host) as connection:
        result = connection.run(planning.canary_argv(plan, holder, user), check=False, timeout=30)
    if result.exit_status != 0:
        raise PermanentError(
            f"canary login as {user} in the drill of {plan.service} failed (exit {result.exit_status}): {result.stderr_tail.strip()}"
        )
    return f"logged in as {user}"


@task(name="check isolation", **QUICK)
def isolation(fleet: Fleet, plan: planning.DrillPlan) -> dict:
    """What the bubble's routing says (read with ``ip route``, never by sending a packet)."""
    with access.connect(fleet, plan.host) as connection:
        route = connection.run(planning.route_argv(plan, plan.production_address), check=False).text.strip()
        table = connection.run(["ip", "-n", plan.netns, "route", "show", "table", "all"], check=False).text
    default = any(line.startswith("default") for line in table.splitlines())
    return {"route": route.splitlines()[0] if route else "", "default_route": default}


@task(name="tear down and prove", **QUICK)
def tear_down(fleet: Fleet, host: str, netns: str, scratch: str, tag: str, manifest: str) -> list[str]:
    """Kill everything in the bubble, delete it and its scratch folder, then look for leftovers
    (processes, namespace, mounts in any process's mount table, files). The manifest goes only
    when nothing is left. Returns the leftovers (empty: cleanup proven)."""
    logger = get_run_logger()
    with access.connect(fleet, host) as connection:
        deadline = time.monotonic() + KILL_WAIT_SECONDS
        while connection.run(planning.kill_argv(netns), check=False).text.strip() not in ("", "0"):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        for argv in planning.teardown_argvs(netns, scratch):
            result = connection.run(argv, check=False)
            if result.exit_status != 0 and "No such file" not in result.stderr_tail:
                logger.warning("%s on %s: %s", " ".join(argv[:3]), host, result.stderr_tail.strip())
        leftovers = planning.parse_leftovers(connection.run(planning.prove_argv(netns, scratch, tag), check=False).text)
        if not leftovers:
            connection.run(["rm", "-f", "--", manifest])
    if leftovers:
        logger.error("drill bubble %s on %s is NOT clean: %s", netns, host, "; ".join(leftovers))
    else:
        logger.info("drill bubble %s on %s removed; proven: no process, namespace, mount or scratch file left", netns, host)
    return leftovers


@task(name="clean up stale drills", **QUICK)
def stale_drills(fleet: Fleet, host: str, service: str | None) -> list[dict]:
    """Manifests earlier drills left on ``host`` (of ``service``, or all)."""
    [output] = run_all(fleet, host, [planning.list_manifests_argv()])
    return planning.stale_manifests(planning.parse_manifests(output), service, host, fleet.server(host).address)
