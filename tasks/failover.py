"""Failover steps: facts, activate, health-check (the fence is in ``tasks/fencing.py``). Each is idempotent so a re-run converges.

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
from hotspare.adapters.errors import PermanentError, TransientError
from hotspare.fleet.context import ServiceContext
from hotspare.inventory import copies
from hotspare.planning import copy_backends, space
from hotspare.planning import live_data as live_plan
from hotspare.planning import replication as layout
from hotspare.planning.activation import (
    ActivationResult,
    discard_staged_argv,
    judge_clone_outcomes,
    stage_argv,
    staged_path,
    swap_argv,
    unswap_argv,
)
from hotspare.planning.containment import as_service_user
from hotspare.planning.failover import CopyChoice, ServiceFacts, activation_argv
from hotspare.probes import http_get_via_dns
from tasks.live_data import neutralise, run_tag

QUICK = dict(cache_policy=NO_CACHE)


def marker_path(service: str) -> str:
    return f"{layout.service_root(service)}/active-copy"


@task(name="gather facts", **QUICK)
def gather_facts(context: ServiceContext) -> ServiceFacts:
    """The service's layout, DNS answer and copies on its mirror, as they are now."""
    fleet, spec, service = context.fleet, context.spec, context.name
    row = copies.service_row(service)
    answer = dns.read_addresses(access.dns_server(fleet, spec.zone), spec.dns_name)
    target = (row.failover or {}).get("target") if row.state == "failing-over" else row.mirror_server
    choices = (
        [
            CopyChoice(copy.id, copy.status, copy.started_at, copy.path)
            for copy in copies.copies_of(service, target)
            if copy.status in ("verified", "copied", "failed")
        ]
        if target
        else []
    )
    return ServiceFacts(
        service=service,
        state=row.state,
        active_server=row.active_server,
        mirror_server=row.mirror_server,
        dns_name=spec.dns_name,
        addresses={server.name: server.address for server in fleet.servers},
        dns_answer=answer,
        copies=choices,
        in_flight=row.failover if row.state == "failing-over" else None,
    )


@task(name="run app commands", **QUICK)
def run_app_commands(context: ServiceContext, server: str, which: str) -> int:
    """Run the service's ``activate`` or ``deactivate`` commands on ``server``; they must succeed.
    Only the run's context is used, so undoing a step never needs the inventory (which may be
    the part that failed)."""
    commands = [as_service_user(argv, context.spec.run_as) for argv in getattr(context.spec, which)]
    with access.connect(context.fleet, server) as connection:
        for argv in commands:
            connection.run(argv, timeout=120)
    get_run_logger().info("%s on %s: %d command(s) ran", which, server, len(commands))
    return len(commands)


def live_paths_of(spec) -> list[str]:
    """Every path a failover makes live, in the order activation handles them."""
    return [*spec.data_paths, *spec.app_paths, *spec.config_paths, *spec.accounts.files]


@task(name="check room on target", **QUICK)
def check_room(context: ServiceContext, target: str, copy_id: str | None) -> dict:
    """Before any change: the target has room for what making ``copy_id`` live writes
    (``planning/space.py``); else refuse with the sentence naming host, free, needed and what to
    do. A planned switchover's copy is not made yet: the current copy stands for it."""
    from tasks.replication import Refused

    fleet, spec, service = context.fleet, context.spec, context.name
    copy_id = copy_id or copies.service_row(service).current_copy_id
    if not copy_id:
        return {"checked": False}
    with access.connect(fleet, target) as host:
        marker = host.run(["cat", marker_path(service)], check=False)
        if marker.exit_status == 0 and marker.text.strip() == copy_id:
            return {"checked": False, "detail": f"copy {copy_id} is live on {target} already"}
        ran = host.run(
            space.room_argv(layout.copy_tree(service, copy_id), layout.service_root(service), service, live_paths_of(spec)),
            timeout=600,
        )
    decision = space.judge_activation_room(service, target, copy_id, space.parse_room(ran.text))
    if not decision.go:
        raise Refused(decision.reason)
    get_run_logger().info(decision.reason)
    return {"checked": True, "detail": decision.reason}


@task(name="activate copy", **QUICK)
def activate_copy(context: ServiceContext, target: str, copy_id: str) -> dict:
    """Make ``copy_id`` live on ``target`` unless a previous attempt already did.

    Nothing hostile goes live and nothing live is destroyed: snapshot clones are staged beside
    their live paths, the rest is copied with rsync keeping every file it replaces or deletes in
    this run's folder (``--backup-dir``); then ONE program (``planning/live_data.py``) cleans
    the staged clones and the rsync-made paths and lists the kept files that differ; only then
    are the clones swapped in (the trees they replace kept aside, their differing files listed
    too) and the marker written."""
    logger = get_run_logger()
    fleet, spec, service = context.fleet, context.spec, context.name
    live_paths = live_paths_of(spec)
    tree = layout.copy_tree(service, copy_id)
    with access.connect(fleet, target) as mirror:
        marker = mirror.run(["cat", marker_path(service)], check=False)
        if marker.exit_status == 0 and marker.text.strip() == copy_id:
            logger.info("copy %s is already live on %s (earlier attempt); not copying again", copy_id, target)
            return {"copied": False, "copy_id": copy_id}
        empty = mirror.run(["find", tree + spec.data_paths[0], "-type", "f", "-print", "-quit"], check=False).text.strip() == ""
        if empty:
            raise PermanentError(f"copy {copy_id} on {target} holds no data files: refusing to make it live")
        staged = _stage_where_possible(mirror, service, copy_id, tree, live_paths)
        rsync_paths = [*staged.rsync_paths, *staged.absent]
        backup_dir = live_plan.backup_folder(layout.service_root(service), copy_id, run_tag())
        strip, stripped = live_plan.rsync_strips([entry.model_dump(mode="json") for entry in spec.allow_special])
        # what this attempt changed so far, for an undo (``undo_activation``) if a later step fails
        record = {
            "copy_id": copy_id,
            "staged": list(staged.cloned),
            "cloned": [],
            "kept_pairs": [],
            "rsync": rsync_paths,
            "backup_dir": backup_dir if rsync_paths else None,
        }
        try:
            if rsync_paths:  # rsync itself keeps out what no allowance needs; the program names it from the copy
                mirror.run(activation_argv(tree, rsync_paths, backup_dir, strip), timeout=6 * 3600)
            roots = (
                [(staged_path(path), path, True) for path in staged.cloned]
                + [(path, path, True) for path in rsync_paths]
                + [(tree + path, path, False) for path in rsync_paths]
            )
            report = neutralise(
                mirror,
                spec,
                roots,
                kept=[(backup_dir + path, path) for path in rsync_paths],
                kept_out_by_rsync=stripped,
                logger=logger,
            )
            swapped = _swap(mirror, tree, copy_id, staged.cloned, record)
            if swapped.kept_pairs:
                clones = neutralise(mirror, spec, [], kept=list(swapped.kept_pairs), logger=logger)
                report = live_plan.Report(
                    report.findings,
                    report.kept + clones.kept,
                    report.kept_count + clones.kept_count,
                    report.scanned,
                    report.errors,
                )
            mirror.run(["sh", "-c", 'printf %s "$1" > "$2"', "sh", copy_id, marker_path(service)])
        except Exception as error:
            _carry(error, record)
            raise
    for kept in swapped.kept_aside:
        logger.warning("the live tree that stood there is kept as %s on %s (nothing was overwritten)", kept, target)
    if rsync_paths:
        logger.info("files the rsync replaced or deleted on %s are kept in %s", target, backup_dir)
    logger.info(
        "copy %s made live on %s: %s",
        copy_id,
        target,
        "; ".join(
            part
            for part in (
                f"cloned and swapped in one step: {', '.join(swapped.cloned)}" if swapped.cloned else "",
                f"copied with rsync: {', '.join(rsync_paths)}" if rsync_paths else "",
            )
            if part
        ),
    )
    return {
        "copied": True,
        "copy_id": copy_id,
        "cloned": list(swapped.cloned),
        "rsync": rsync_paths,
        "kept_aside": list(swapped.kept_aside),
        "backup_dir": backup_dir if rsync_paths else None,
        "kept_pairs": [list(pair) for pair in swapped.kept_pairs],
        "staged": record["staged"],
        "live_data": report.as_dict(),
        "markdown": report.markdown(),
    }


def _carry(error: BaseException, record: dict) -> None:
    """Attach what the activation changed before ``error`` to it, for the runbook's undo."""
    try:
        error.activation = record
    except AttributeError:  # an exception type without a __dict__: the runbook cannot undo precisely
        pass


@task(name="undo activation", **QUICK)
def undo_activation(context: ServiceContext, target: str, activation: dict) -> str:
    """Take back a copy made live on ``target`` whose failover stopped before DNS moved: stop
    the app there, delete the clones and put back the trees they replaced, remove clones staged
    but never swapped in and the marker. Returns what was undone, in one phrase; what could not
    be undone is named in it too (the sentence must be true)."""
    logger = get_run_logger()
    fleet, service = context.fleet, context.name
    done, failed = [], []
    try:
        run_app_commands.fn(context, target, "deactivate")
        done.append(f"the app on {target} stopped")
    except Exception as error:  # keep undoing: the rest matters as much
        failed.append(f"the app on {target} could not be stopped ({error})")
    kept = {live: aside for aside, live in activation.get("kept_pairs", [])}
    with access.connect(fleet, target) as host:
        for path in activation.get("cloned", []):
            ran = host.run(unswap_argv(path, kept.get(path)), check=False)
            if ran.exit_status == 0:
                done.append(f"{path} back as it was" if kept.get(path) else f"the clone at {path} removed")
            else:
                failed.append(f"{path} could not be put back ({(ran.text + ran.stderr_tail).strip()[-200:]})")
        for path in set(activation.get("staged", [])) - set(activation.get("cloned", [])):
            host.run(discard_staged_argv(path), check=False)
        host.run(["rm", "-f", "--", marker_path(service)], check=False)
    if activation.get("rsync"):
        done.append(
            f"the files rsync copied ({', '.join(activation['rsync'])}) stay"
            + (f", what they replaced is kept in {activation['backup_dir']}" if activation.get("backup_dir") else "")
        )
    sentence = "; ".join(done + [f"NOT undone: {item}" for item in failed])
    (logger.error if failed else logger.info)(
        "activation of copy %s on %s undone: %s", activation.get("copy_id"), target, sentence
    )
    return sentence


def _stage_where_possible(mirror, service: str, copy_id: str, tree: str, live_paths: list[str]) -> ActivationResult:
    """Clone beside its live path every path a snapshot copy can be cloned to (btrfs); the rest
    is left for rsync (``planning/activation.py``)."""
    if mirror.run(copy_backends.is_snapshot_argv(service, copy_id), check=False).exit_status != 0:
        return ActivationResult((), (), tuple(live_paths), ())
    outcomes = {}
    for path in live_paths:
        ran = mirror.run(stage_argv(tree, path, copy_id), timeout=6 * 3600, check=False)
        outcomes[path] = (ran.exit_status, ran.text + ran.stderr_tail)
    return judge_clone_outcomes(outcomes)


def _swap(mirror, tree: str, copy_id: str, cloned: tuple[str, ...], record: dict) -> ActivationResult:
    """Swap each staged clone in, noting each one done in ``record`` (a failure stops at once)."""
    outcomes = {}
    for path in cloned:
        ran = mirror.run(swap_argv(tree, path, copy_id), check=False)
        outcomes[path] = (ran.exit_status, ran.text + ran.stderr_tail)
        done = judge_clone_outcomes({path: outcomes[path]})
        record["cloned"] += list(done.cloned)
        record["kept_pairs"] += [list(pair) for pair in done.kept_pairs]
    return judge_clone_outcomes(outcomes)


def health_target(health_url: str, address: str) -> str:
    """The health URL aimed at one server's address (the Host header keeps the name)."""
    parts = urlsplit(health_url)
    return parts._replace(netloc=f"{address}:{parts.port or 80}").geturl()


@task(name="health check", **QUICK)
def health_check_direct(context: ServiceContext, address: str, seconds: float = 20.0) -> float:
    """Poll the app's health URL at ``address`` until it answers 2xx; seconds it took."""
    url, service = context.spec.health_url, context.name
    if not url:
        get_run_logger().warning("%s has no health_url; skipping the direct health check", service)
        return 0.0
    return _poll(url, lambda _name: [address], seconds, f"{service} at {address}")


@task(name="check through DNS", **QUICK)
def check_through_dns(context: ServiceContext, expected_address: str, seconds: float = 20.0) -> float:
    """The app answers through its DNS name, resolved by the authoritative server, at the new address."""
    spec = context.spec
    if not spec.health_url:
        return 0.0
    server = access.dns_server(context.fleet, spec.zone)

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


def serves_app(context: ServiceContext, address: str) -> bool:
    """True when the app answers its health URL at ``address`` right now (split-brain probe)."""
    url = context.spec.health_url
    if not url:
        return False
    try:
        status, _body, _address = http_get_via_dns(url, lambda _name: [address], timeout=2.0)
    except OSError:
        return False
    return 200 <= status < 300
