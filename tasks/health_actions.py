"""What the health runbook does with a judgement: events, automatic failover (only where the
service's policy allows it), replacement requests e-mailed to remote hands, the run's table.

Side channels never mask the checks: a failed event, submission or e-mail is logged and
recorded, and the round goes on.
"""

from __future__ import annotations

from hotspare import access
from hotspare.adapters import smtp
from hotspare.inventory import health as health_inventory
from hotspare.planning.health import Change, ComponentStatus
from hotspare.planning.replacements import plan_replacements, request_for

FAILOVER_DEPLOYMENT = "failover/failover"


def emit_change(change: Change, logger, active: dict[str, str] | None = None) -> None:
    """One Prefect event per state change, about the server or service. A service's event names
    the server it runs on (``active``: service -> server), so paging folds a machine's failures."""
    try:
        from prefect.events import emit_event

        payload = change.payload()
        if change.subject.startswith("service:") and active:
            payload["server"] = active.get(change.subject.split(":", 1)[1], "")
        emit_event(event=change.event, resource={"prefect.resource.id": change.resource_id}, payload=payload)
        logger.info("event %s for %s %s", change.event, change.resource_id, change.component)
    except Exception as error:  # events are a side channel
        logger.error("could not emit %s for %s: %s", change.event, change.resource_id, error)


def maybe_fail_over(fleet, service: str, change: Change, logger) -> dict:
    """What the service's policy says to do now that its production is declared down: nothing
    (``off``: an operator decides) or submit the ``failover`` deployment, which waits for an
    approver (``approval``); ``unattended`` is the health runbook's own (``flows/unattended.py``)."""
    policy = fleet.health.policy(service)
    if policy.automatic_failover == "off":
        sentence = (
            f"not failing {service} over: its production {change.subject} is down, but the fleet's health "
            f"policy does not allow automatic failover (an operator decides: hotspare failover {service})"
        )
        logger.warning(sentence)
        return {"service": service, "submitted": False, "reason": sentence}
    try:
        from prefect.deployments import run_deployment

        run = run_deployment(FAILOVER_DEPLOYMENT, parameters={"service": service}, timeout=0)
        sentence = (
            f"submitted failover of {service} (flow run {run.id}): production {change.subject} is down; it waits for approval"
        )
        logger.warning(sentence)
        return {"service": service, "submitted": True, "flow_run_id": str(run.id), "reason": sentence}
    except Exception as error:
        sentence = f"could not submit the failover of {service}: {error} (is `hotspare serve` running?)"
        logger.error(sentence)
        return {"service": service, "submitted": False, "reason": sentence}


def handle_replacements(fleet, statuses: list[ComponentStatus], logger) -> list[dict]:
    """Open (and e-mail) or close replacement requests as the planner says."""
    plan = plan_replacements(statuses, health_inventory.open_request_keys())
    done = []
    for sentence in plan.decisions:
        logger.info(sentence)
    for status in plan.open:
        server = fleet.server(status.subject) if any(s.name == status.subject for s in fleet.servers) else None
        facility = server.facility if server else ""
        location = getattr(server, "location", None) if server else None
        request = request_for(status, facility, _location_text(location))
        request_id = health_inventory.open_request(request)
        mailed_to, outcome = _mail(fleet, facility, request, logger)
        health_inventory.record_mail(request_id, mailed_to, outcome)
        done.append(
            {
                "opened": request_id,
                "server": request.server,
                "component": request.component,
                "mailed_to": mailed_to,
                "mail": outcome,
            }
        )
    for server_name, component in plan.close:
        row = health_inventory.close_request(server_name, component)
        if row is not None:
            logger.info("replacement of %s %s closed after %.0f s", server_name, component, row.duration_s or 0)
            done.append({"closed": row.id, "server": server_name, "component": component, "duration_s": row.duration_s})
    return done


def _location_text(location) -> str:
    if location is None:
        return ""
    if hasattr(location, "model_dump"):
        return ", ".join(f"{key} {value}" for key, value in location.model_dump().items() if value not in (None, ""))
    return str(location)


def _mail(fleet, facility_name: str, request, logger) -> tuple[str, str]:
    """E-mail the facility's remote hands; returns (recipient, outcome)."""
    facility = next((f for f in fleet.facilities if f.name == facility_name), None)
    hands = facility.remote_hands if facility else None
    if hands is None:
        logger.warning("no remote hands for facility %s in the fleet file: replacement request not e-mailed", facility_name)
        return "", "not sent: the facility has no remote_hands"
    if fleet.mail is None:
        logger.warning("no mail section in the fleet file: replacement request not e-mailed")
        return hands.email, "not sent: the fleet file has no mail section"
    try:
        message = smtp.compose(fleet.mail.sender, [hands.email], request.subject_line(), request.body(hands.name))
        smtp.send(access.smtp_relay(fleet.mail.smtp_block), message)
    except Exception as error:  # notifications are a side channel
        logger.error("replacement request to %s not sent: %s", hands.email, error)
        return hands.email, f"not sent: {error}"
    logger.info("replacement request e-mailed to %s (%s)", hands.email, hands.name)
    return hands.email, "sent"


def status_record(status: ComponentStatus) -> dict:
    return {
        "subject": status.subject,
        "component": status.component,
        "kind": status.kind.value,
        "state": status.state.value,
        "evidence": status.evidence,
        "sites": list(status.sites),
        "failed_rounds": status.failed_rounds,
        "good_rounds": status.good_rounds,
    }


def publish(summary: dict, logger) -> None:
    """The run's table artifact: components not ok, and this run's changes."""
    try:
        from prefect.artifacts import create_table_artifact

        rows = [{"what": "state", **record} for record in summary["components"]]
        rows += [
            {
                "what": change["event"],
                "subject": change["subject"],
                "component": change["component"],
                "state": change["state"],
                "evidence": change["evidence"],
                "sites": ", ".join(change["sites"]),
            }
            for change in summary["changes"]
        ]
        rows = rows or [{"what": "state", "subject": "all", "state": "ok", "evidence": f"{summary['rounds']} round(s)"}]
        create_table_artifact(
            table=rows,
            key="health",
            description=f"Health: {summary['rounds']} round(s), "
            f"{len(summary['changes'])} change(s), {len(summary['failed'])} failed",
        )
    except Exception as error:
        logger.error("could not publish the health table: %s", error)
