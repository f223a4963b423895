"""Failover steps: fence, activate, health-check. Each is idempotent so a re-run converges.

Activation leaves a marker on the target naming the copy that was made live; a re-run that
finds it does not copy again (that would overwrite writes users made since).
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from hotspare import access
from hotspare.adapters import dns
from hotspare.adapters.errors import HotspareError, PermanentError, TransientError
from hotspare.inventory import copies
from hotspare.planning import copy_backends
from hotspare.planning import replication as layout
from hotspare.planning.activation import ActivationResult, clone_swap_argv, judge_clone_outcomes
from hotspare.planning.containment import as_service_user
from hotspare.planning.failover import CopyChoice, ServiceFacts, activation_argv
from hotspare.probes import http_get_via_dns

QUICK = dict(cache_policy=NO_CACHE)


def marker_path(service: str) -> str:
    return f"{layout.service_root(service)}/active-copy"


@task(name="gather facts", **QUICK)
def gather_facts(service: str) -> ServiceFacts:
    """The service's layout, DNS answer and copies on its mirror, as they are now."""
    fleet = access.loaded_fleet()
    spec = fleet.service(service)
    row = copies.service_row(service)
    answer = dns.read_addresses(access.dns_server(fleet, spec.zone), spec.dns_name)
    target = (row.failover or {}).get("target") if row.state == "failing-over" else row.mirror_server
    choices = [
        CopyChoice(copy.id, copy.status, copy.started_at, copy.path)
        for copy in copies.copies_of(service, target)
        if copy.status in ("verified", "copied", "failed")
    ] if target else []
    return ServiceFacts(
        service=service, state=row.state, active_server=row.active_server, mirror_server=row.mirror_server,
        dns_name=spec.dns_name, addresses={server.name: server.address for server in fleet.servers},
        dns_answer=answer, copies=choices, in_flight=row.failover if row.state == "failing-over" else None,
    )


@task(name="fence production", **QUICK)
def fence(service: str, server: str, seconds: float = 8.0) -> dict:
    """Stop the app on the old production, bounded in time; unreachable means unfenced, not stuck."""
    logger = get_run_logger()
    fleet = access.loaded_fleet()
    spec = fleet.service(service)
    commands = [as_service_user(argv, spec.run_as) for argv in spec.deactivate]
    deadline = time.monotonic() + seconds
    try:
        with access.connect(fleet, server, connect_timeout=min(3.0, seconds)) as connection:
            for argv in commands:  # one deadline for all of them: fencing never waits longer
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TransientError(f"fencing {server} ran out of its {seconds:g} s")
                connection.run(argv, timeout=remaining)
    except HotspareError as error:
        logger.warning("could not fence %s (%s); going on UNFENCED: it may still serve stale data if it comes back", server, error)
        return {"fenced": False, "detail": str(error)}
    logger.info("fenced %s: ran %d deactivation command(s)", server, len(commands))
    return {"fenced": True, "detail": f"{len(commands)} deactivation command(s) ran"}


@task(name="run app commands", **QUICK)
def run_app_commands(service: str, server: str, which: str) -> int:
    """Run the service's ``activate`` or ``deactivate`` commands on ``server``; they must succeed."""
    fleet = access.loaded_fleet()
    spec = fleet.service(service)
    commands = [as_service_user(argv, spec.run_as) for argv in getattr(spec, which)]
    with access.connect(fleet, server) as connection:
        for argv in commands:
            connection.run(argv, timeout=120)
    get_run_logger().info("%s on %s: %d command(s) ran", which, server, len(commands))
    return len(commands)


@task(name="activate copy", **QUICK)
def activate_copy(service: str, target: str, copy_id: str) -> dict:
    """Make ``copy_id`` live on ``target`` unless a previous attempt already did."""
    logger = get_run_logger()
    fleet = access.loaded_fleet()
    spec = fleet.service(service)
    live_paths = [*spec.data_paths, *spec.app_paths, *spec.config_paths, *spec.accounts.files]
    tree = layout.copy_tree(service, copy_id)
    with access.connect(fleet, target) as mirror:
        marker = mirror.run(["cat", marker_path(service)], check=False)
        if marker.exit_status == 0 and marker.text.strip() == copy_id:
            logger.info("copy %s is already live on %s (earlier attempt); not copying again", copy_id, target)
            return {"copied": False, "copy_id": copy_id}
        empty = mirror.run(["find", tree + spec.data_paths[0], "-type", "f", "-print", "-quit"], check=False).text.strip() == ""
        if empty:
            raise PermanentError(f"copy {copy_id} on {target} holds no data files: refusing to make it live")
        result = _clone_where_possible(mirror, service, copy_id, tree, live_paths)
        rsync_paths = [*result.rsync_paths, *result.absent]
        if rsync_paths:
            mirror.run(activation_argv(tree, rsync_paths), timeout=6 * 3600)
        mirror.run(["sh", "-c", 'printf %s "$1" > "$2"', "sh", copy_id, marker_path(service)])
    for kept in result.kept_aside:
        logger.warning("the live tree that stood there is kept as %s on %s (nothing was overwritten)", kept, target)
    logger.info("copy %s made live on %s: %s", copy_id, target,
                "; ".join(part for part in (
                    f"cloned and swapped in one step: {', '.join(result.cloned)}" if result.cloned else "",
                    f"copied with rsync: {', '.join(rsync_paths)}" if rsync_paths else "") if part))
    return {"copied": True, "copy_id": copy_id, "cloned": list(result.cloned), "rsync": rsync_paths,
            "kept_aside": list(result.kept_aside)}


def _clone_where_possible(mirror, service: str, copy_id: str, tree: str, live_paths: list[str]) -> ActivationResult:
    """Clone-and-swap every live path a snapshot copy can be cloned to (btrfs); the rest is
    left for rsync (``planning/activation.py``)."""
    if mirror.run(copy_backends.is_snapshot_argv(service, copy_id), check=False).exit_status != 0:
        return ActivationResult((), (), tuple(live_paths), ())
    outcomes = {}
    for path in live_paths:
        ran = mirror.run(clone_swap_argv(tree, path, copy_id), timeout=6 * 3600, check=False)
        outcomes[path] = (ran.exit_status, ran.text + ran.stderr_tail)
    return judge_clone_outcomes(outcomes)


def health_target(health_url: str, address: str) -> str:
    """The health URL aimed at one server's address (the Host header keeps the name)."""
    parts = urlsplit(health_url)
    return parts._replace(netloc=f"{address}:{parts.port or 80}").geturl()


@task(name="health check", **QUICK)
def health_check_direct(service: str, address: str, seconds: float = 20.0) -> float:
    """Poll the app's health URL at ``address`` until it answers 2xx; seconds it took."""
    fleet = access.loaded_fleet()
    url = fleet.service(service).health_url
    if not url:
        get_run_logger().warning("%s has no health_url; skipping the direct health check", service)
        return 0.0
    return _poll(url, lambda _name: [address], seconds, f"{service} at {address}")


@task(name="check through DNS", **QUICK)
def check_through_dns(service: str, expected_address: str, seconds: float = 20.0) -> float:
    """The app answers through its DNS name, resolved by the authoritative server, at the new address."""
    fleet = access.loaded_fleet()
    spec = fleet.service(service)
    if not spec.health_url:
        return 0.0
    server = access.dns_server(fleet, spec.zone)

    def resolve(name: str) -> list[str]:
        answer = dns.read_addresses(server, name)
        if answer != [expected_address]:
            raise ConnectionError(f"{name} answers {answer}, not {expected_address}")
        return answer

    return _poll(spec.health_url, resolve, seconds, f"{spec.dns_name} through DNS")


def _poll(url: str, resolve, seconds: float, what: str) -> float:
    started = time.monotonic()
    deadline = started + seconds
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            status, _body, _address = http_get_via_dns(url, resolve, timeout=2.0)
            if 200 <= status < 300:
                return round(time.monotonic() - started, 3)
            last = f"HTTP {status}"
        except (OSError, ConnectionError, TransientError) as error:
            last = str(error)
        time.sleep(0.1)
    raise TransientError(f"{what} is not healthy after {seconds:g} s: {last}")


def serves_app(service: str, address: str) -> bool:
    """True when the app answers its health URL at ``address`` right now (split-brain probe)."""
    fleet = access.loaded_fleet()
    url = fleet.service(service).health_url
    if not url:
        return False
    try:
        status, _body, _address = http_get_via_dns(url, lambda _name: [address], timeout=2.0)
    except OSError:
        return False
    return 200 <= status < 300
