"""Runbook: health checks from several sites, every interval for a minute.

    first: remove the bubbles of killed drills (``flows/drill.py: clean_up_gone_drills``)
    each round: resolve names -> probe from every checker site (in parallel) -> hardware,
    space, certificates, freshness -> judge (agreement + hysteresis) -> record -> events on
    changes -> automatic failover where policy allows -> replacement requests

A scheduled run (every minute by default) keeps checking for ``run_seconds``; state and
counters live in the inventory, so the next run continues where this one stopped. Events are
emitted only when a component's judged state changes.

Health follows the layout: each round reads where every service runs from the inventory (so the
probes and the DNS expectation use the new production at once after a failover, failback or
facility failover), and a service that was moving during the round (failing over at its start or
end, or on another server at its end) has this round's readings set aside: they may have probed
an address that was being left. The judge starts a moved service afresh (``planning/health.py``).
"""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed, Failed
from sqlmodel import select

from flows.unattended import fail_over_unattended
from hotspare import access
from hotspare.adapters.errors import PermanentError
from hotspare.fleet.health_schema import LOCAL, health_problems, health_warnings
from hotspare.inventory import health as health_inventory
from hotspare.inventory import watch
from hotspare.inventory.db import session
from hotspare.inventory.models import ServiceRow, as_utc, utcnow
from hotspare.planning.health import Judgement, Rules, judge, production_down
from hotspare.planning.health_readings import SpaceThresholds, freshness_reading
from hotspare.planning.readings import ComponentState, Reading
from tasks import health_actions
from tasks.health_probes import RoundTargets, control_extras, probe_site, resolve_services, round_targets
from tasks.orchestrator import require_orchestrator

try:  # the hardware reader (RAID, BMC sensors) may not be installed in every deployment
    from tasks.hardware import read_hardware
except ImportError:  # pragma: no cover - depends on the installed version
    read_hardware = None


CONFIRM_SPEEDUP = 3  # rounds come this many times faster while a component looks worse than its state
# A failover this recent makes a service's probes unreliable (its address is moving); one stalled
# longer is judged again, so a failover left midway never hides a service from its health checks.
MOVING_GRACE_SECONDS = 600


@dataclass(frozen=True)
class RoundOutcome:
    judgement: Judgement
    sites: dict  # site -> cut-off reason ("" when it counts)
    readings: int
    seconds: float
    set_aside: tuple[str, ...] = ()  # sentences: services whose readings this round did not count


def active_servers() -> dict[str, str]:
    """service -> the server that runs it now (the inventory's view, after failovers)."""
    return {name: server for name, (server, _state) in service_layout().items()}


def service_layout(now: datetime | None = None) -> dict[str, tuple[str, str]]:
    """service -> (the server that runs it now, its state), from the inventory. A failover that
    started less than ``MOVING_GRACE_SECONDS`` ago reads as state ``moving``; one stalled longer
    than that keeps its inventory state, so a service left midway is judged again, not ignored."""
    now = now or datetime.now(timezone.utc)
    with session() as db:
        rows = list(db.exec(select(ServiceRow).where(ServiceRow.retired == False)))
    layout = {}
    for row in rows:
        state = row.state
        if state == "failing-over":
            started = (row.failover or {}).get("started_at")
            since = as_utc(datetime.fromisoformat(started)) if started else None
            if since is None or (now - since).total_seconds() < MOVING_GRACE_SECONDS:
                state = "moving"
        layout[row.name] = (row.active_server, state)
    return layout


def moving_services(before: dict[str, tuple[str, str]], after: dict[str, tuple[str, str]]) -> dict[str, str]:
    """service -> why its readings of a round that started with ``before`` and ended with
    ``after`` do not count: it was failing over, or it runs on another server now."""
    moving = {}
    for name, (server, state) in before.items():
        server_after, state_after = after.get(name, (server, state))
        if server_after != server:
            moving[name] = f"it moved from {server} to {server_after} during the round"
        elif "moving" in (state, state_after):
            moving[name] = "it was failing over during the round"
    return moving


def health_round(
    fleet,
    targets: RoundTargets,
    previous: dict,
    ssh_login: bool = True,
    hardware: bool = True,
    freshness: bool = True,
    log=None,
    layout_before: dict[str, tuple[str, str]] | None = None,
) -> RoundOutcome:
    """One round from every checker site, judged against ``previous``; nothing is stored.

    ``layout_before``: ``service_layout()`` read when ``targets`` were made; given, the layout is
    read again after the probes and the readings of services that moved meanwhile are set aside.
    """
    started = time.monotonic()
    settings = fleet.health
    timeout = settings.probe_timeout_seconds
    thresholds = SpaceThresholds(
        settings.disk_space_warning_percent,
        settings.disk_space_failed_percent,
        settings.inode_warning_percent,
        settings.inode_failed_percent,
    )
    targets = resolve_services(fleet, targets, timeout)
    checkers = settings.checkers
    with ThreadPoolExecutor(max_workers=len(checkers) + 1) as pool:
        hardware_future = pool.submit(_hardware_readings, fleet, targets, timeout, log) if hardware else None
        site_results = list(pool.map(lambda checker: probe_site(fleet, checker, targets, timeout), checkers))
        readings: list[Reading] = [reading for result in site_results for reading in result.readings]
        for checker, result in zip(checkers, site_results):
            if checker.via == LOCAL and not result.report.cut_off:
                tcp_ok = {
                    r.subject: r.state == ComponentState.ok for r in result.readings if r.component.startswith("reachability")
                }
                readings += control_extras(
                    fleet, targets, checker.name, timeout, thresholds, settings.certificate_warning_days, tcp_ok, ssh_login
                )
        if hardware_future is not None:
            readings += hardware_future.result()
    if freshness:
        readings += _freshness_readings(fleet, targets)
    set_aside: tuple[str, ...] = ()
    if layout_before is not None:
        moving = moving_services(
            {s.name: layout_before.get(s.name, (s.active_server, "")) for s in targets.services}, service_layout()
        )
        set_aside = tuple(f"service:{name}: this round's readings do not count: {why}" for name, why in sorted(moving.items()))
        readings = [
            reading
            for reading in readings
            if not (reading.subject.startswith("service:") and reading.subject.split(":", 1)[1] in moving)
        ]
    facility_of = {server.name: server.facility for server in targets.servers}
    facility_of |= {f"service:{service.name}": facility_of.get(service.active_server, "") for service in targets.services}
    placement = {f"service:{service.name}": service.active_server for service in targets.services}
    rules = Rules(settings.failures_to_down, settings.successes_to_recover)
    judgement = judge(readings, [result.report for result in site_results], previous, facility_of, rules, placement)
    sites = {result.report.site: result.report.reason for result in site_results}
    return RoundOutcome(judgement, sites, len(readings), time.monotonic() - started, set_aside)


def _hardware_readings(fleet, targets: RoundTargets, timeout: float, log) -> list[Reading]:
    """``read_hardware`` for every server that answers, when installed; a reader's failure is
    logged, not fatal.

    A server whose SSH port does not answer within the probe timeout is skipped this round: the
    reader would wait its own, longer, connect timeout, and the reachability probes already say
    what is wrong. Its hardware components keep their state and counters until it answers."""
    if read_hardware is None:
        return []

    def one(server):
        if not _answers(server.address, server.ssh_port, timeout):
            return []
        try:
            return list(read_hardware(fleet, server.name))
        except Exception as error:  # a broken reader must not stop reachability checks
            if log:
                log.warning("hardware of %s not read: %s", server.name, error)
            return []

    with ThreadPoolExecutor(max_workers=min(16, len(targets.servers) or 1)) as pool:
        return [reading for found in pool.map(one, targets.servers) for reading in found]


def _clean_up_gone_drills(logger) -> list[dict]:
    """Killed drills' bubbles (production's address on a mirror) go at the next health run
    (``flows/drill.py``); a failure here is logged and never stops the checks."""
    from flows.drill import clean_up_gone_drills

    try:
        return clean_up_gone_drills(logger)
    except Exception as error:
        logger.error("could not look for killed drills: %s", error)
        return []


def _answers(address: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def _freshness_readings(fleet, targets: RoundTargets) -> list[Reading]:
    from hotspare.inventory import copies

    now = datetime.now(timezone.utc)
    readings = []
    for service in targets.services:
        newest = copies.newest_verified(service.name)
        started = as_utc(newest.started_at) if newest else None
        readings.append(freshness_reading(service.name, started, now, fleet.rpo_hours_of(fleet.service(service.name))))
    return readings


WATCH = "health"
# A live run releases its turn when it ends; only a run that died leaves its lease to run out:
# two rounds and a round's slowest probes after its last renewal.
WATCH_GRACE_SECONDS = 60.0


def _take_the_watch(holder: str, deadline: float, tick: float, logger) -> bool:
    """Wait (until this run's own ``deadline`` at most) while an earlier health run still checks,
    then take its turn: scheduled runs overlap so that none starts late, and never check at once."""
    while True:
        remaining = deadline - time.monotonic()
        taken, current, until = watch.claim(WATCH, holder, utcnow() + timedelta(seconds=2 * tick + WATCH_GRACE_SECONDS))
        if taken:
            return True
        wait = min((until - utcnow()).total_seconds() if until else tick, remaining, tick)
        if remaining <= 0:
            logger.info("health: %s kept checking past this run's time; this run did not check", current)
            return False
        logger.info("health: %s is still checking; this run takes over when it ends (at most %.0f s)", current, remaining)
        time.sleep(max(0.2, wait))


@flow(name="health", log_prints=True)
def health(rounds: int | None = None, run_seconds: float | None = None, interval_seconds: float | None = None) -> dict:
    """Check the fleet from every checker site; see the module docstring.

    ``rounds``: stop after that many rounds (a one-off check); otherwise check for
    ``run_seconds`` (default: the fleet's). ``interval_seconds`` overrides the fleet's interval.

    Args:
        rounds: Check this many rounds and stop (default: as many as fit in run_seconds).
        run_seconds: How long this run keeps checking (default: the fleet's health.run_seconds).
        interval_seconds: Seconds between rounds (default: the fleet's health.interval_seconds).
    """
    require_orchestrator(None, "health")  # one orchestrator per fleet
    logger = get_run_logger()
    fleet = access.loaded_fleet()
    problems = health_problems(fleet)
    if problems:
        raise PermanentError(
            "the fleet's health section is unusable: " + "; ".join(problems) + ". Fix the fleet file and load it again."
        )
    for warning in health_warnings(fleet):
        logger.warning(warning)
    settings = fleet.health
    interval = interval_seconds or settings.interval_seconds
    service_interval = {policy.name: policy.interval_seconds for policy in settings.services if policy.interval_seconds}
    tick = interval_seconds or min([interval, *service_interval.values()])
    deadline = time.monotonic() + (run_seconds or settings.run_seconds)
    run_id = flow_run.get_id()
    watcher = f"health:{run_id or 'local'}" if rounds is None else None  # a one-off check takes no turn
    if watcher and not _take_the_watch(watcher, deadline, tick, logger):
        return Completed(
            name="Skipped",
            message="another health run kept checking past this run's time; this run did not check",
            data={"rounds": 0, "handed_over": False, "changes": [], "failovers": [], "components": [], "failed": []},
        )
    next_due: dict[str, float] = {}
    summary = {"rounds": 0, "changes": [], "sites": {}, "failovers": [], "replacements": [], "round_seconds": []}
    summary["drills_cleaned"] = _clean_up_gone_drills(logger)
    while True:
        round_start = time.monotonic()
        if watcher:  # renewed ahead of each round: a run that dies hands over within two ticks
            watch.claim(WATCH, watcher, utcnow() + timedelta(seconds=2 * tick + WATCH_GRACE_SECONDS))
        summary.setdefault("checked", [time.time(), time.time()])
        due = [s.name for s in fleet.services if next_due.get(s.name, 0) <= round_start]
        for name in due:
            next_due[name] = round_start + service_interval.get(name, interval) - 0.01
        layout = service_layout()  # read every round: probes follow failovers at once
        active = {name: server for name, (server, _state) in layout.items()}
        targets = round_targets(fleet, active, due)
        outcome = health_round(fleet, targets, health_inventory.load_statuses(), log=logger, layout_before=layout)
        judgement = outcome.judgement
        for sentence in outcome.set_aside + judgement.decisions:
            logger.info(sentence)
        health_inventory.store_round(judgement.statuses, judgement.changes, run_id)
        # Where services run now, not when the round began: one that failed over meanwhile is not
        # on the lost server any more, and is not submitted for a failover again.
        active_now = active_servers() if judgement.changes else active
        for change in judgement.changes:
            health_actions.emit_change(change, logger, active)
            summary["changes"].append(
                {
                    "event": change.event,
                    "subject": change.subject,
                    "component": change.component,
                    "previous": change.previous.value,
                    "state": change.state.value,
                    "evidence": change.evidence,
                    "sites": list(change.sites),
                }
            )
            for service in production_down(change, active_now):
                unattended = fleet.health.policy(service).automatic_failover == "unattended"
                summary["failovers"].append(
                    fail_over_unattended(service, change, logger)
                    if unattended
                    else health_actions.maybe_fail_over(fleet, service, change, logger)
                )
        summary["replacements"] += health_actions.handle_replacements(fleet, list(judgement.statuses.values()), logger)
        summary["rounds"] += 1
        summary["checked"][1] = time.time()  # first round's start, last round's end (epoch seconds)
        summary["sites"] = outcome.sites
        summary["round_seconds"].append(round(outcome.seconds, 3))
        if rounds is not None and summary["rounds"] >= rounds:
            break
        # A component that looks worse is confirmed sooner: hysteresis still needs N rounds, but
        # they need not take N whole intervals (detection within ~30 s at 10 s intervals).
        suspect = any(status.worse_rounds > 0 for status in judgement.statuses.values())
        next_round = round_start + (tick / CONFIRM_SPEEDUP if suspect else tick)
        if next_round >= deadline:
            break
        time.sleep(max(0.0, next_round - time.monotonic()))
    if watcher:
        watch.release(WATCH, watcher)
    statuses = list(health_inventory.load_statuses().values())
    summary["components"] = [health_actions.status_record(status) for status in statuses if status.state != ComponentState.ok]
    summary["failed"] = [record for record in summary["components"] if record["state"] == "failed"]
    health_actions.publish(summary, logger)
    return _final_state(summary)


def _final_state(summary: dict):
    """The summary, or a Failed run naming each failover it should have made and did not (an
    unattended failover that failed, a submission refused): the checks ran, a step did not."""
    undone = [
        entry["reason"]
        for entry in summary["failovers"]
        if entry.get("outcome") == "failed" or entry["reason"].startswith("could not submit")
    ]
    if not undone:
        return summary
    message = f"{len(undone)} failover(s) not done: " + "; ".join(undone)[:800]
    return Failed(name="Failover not done", message=message, data=RuntimeError(message))
