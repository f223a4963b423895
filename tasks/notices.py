"""Telling customers: the blast e-mail of an incident notice, and the emergency status page.

Plain functions (the CLI calls them directly, the flows in ``flows/notices.py`` wrap them):
``send_notice`` plans with ``planning/notices.py`` and delivers one message per recipient
through ``adapters.smtp.send_one``, recording every step in the inventory
(``inventory/notices.py``) so that a run killed midway resumes without sending anybody the
same notice twice. ``publish_status_page`` renders ``planning/status_page.py`` and uploads it
over SFTP (pinned host key) to the off-site web server, atomically (temporary name, then
rename). Both are side channels: they record their failures in the incident's timeline and
return them, never raising into a failover.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from datetime import timedelta

from hotspare.adapters.errors import HotspareError, MissingConfiguration, TransientError

log = logging.getLogger("hotspare.notices")

ROUNDS = 3  # first attempt + retries of recipients the relay deferred (4xx)
RETRY_BACKOFF_SECONDS = 1.0
PUBLISH_ATTEMPTS = 3
PUBLISH_BACKOFF_SECONDS = 1.0
RESOLVED_SHOWN_FOR = timedelta(days=3)


def notice_facts(incident_id: int) -> tuple[dict, dict[str, str], dict[str, str]]:
    """The incident (with its timeline), the server each service runs on now, and when each
    service that failed over moved there (ISO 8601)."""
    from sqlmodel import select

    from hotspare.inventory import session
    from hotspare.inventory.incidents import get_incident
    from hotspare.inventory.models import ServiceRow

    incident = get_incident(incident_id)
    with session() as db:
        rows = list(db.exec(select(ServiceRow).where(ServiceRow.retired == False)))  # noqa: E712
        active = {row.name: row.active_server for row in rows}
        moved_at = {
            row.name: row.failover["finished_at"]
            for row in rows
            if (row.failover or {}).get("finished_at") and row.failover.get("previous_production")
        }
    return incident, active, moved_at


def preview_notice(incident_id: int, kind: str, approved: bool = False, fleet=None):
    """The plan of the notice (who gets what, and whether it goes now) without sending anything."""
    from hotspare.access import loaded_fleet
    from hotspare.planning.notices import plan_notice
    from tasks.subscriptions import page_urls, public_references, status_page_key, with_subscribers

    fleet = fleet or loaded_fleet()
    incident, active, moved_at = notice_facts(incident_id)
    section = with_subscribers(fleet.customer_notices)  # confirmed status page subscribers too
    pages: dict[str, str] = {}
    try:  # each reader's own page and the incident's public name, both keyed by the status page key
        key = status_page_key(fleet)
        pages = page_urls(fleet, key)
        incident = incident | {"reference": public_references(fleet, [incident_id], key)[incident_id]}
    except (HotspareError, OSError) as error:
        log.error(
            "notice of incident %s: no status page key (%s): the message links the public page and names no incident reference",
            incident_id,
            error,
        )
    return plan_notice(incident, kind, section, active, approved=approved, moved_at=moved_at, page_urls=pages), incident


def send_notice(
    incident_id: int,
    kind: str = "opened",
    approved_by: str | None = None,
    messages_per_second: float | None = None,
    fleet=None,
    sleep: Callable[[float], None] = time.sleep,
    relay=None,
) -> dict:
    """Send (or resume) the notice of ``incident_id``'s opening or resolution; returns a summary.

    Held by policy (preview-and-approve, or none) unless ``approved_by`` names the operator
    who approved it. Recipients already done are skipped; ones the relay deferred are retried.
    ``relay`` (an ``adapters.smtp.Relay``) replaces the fleet's SmtpServer block, so a script
    can send without loading Prefect.
    """
    from hotspare.access import loaded_fleet, smtp_relay
    from hotspare.inventory import notices as records
    from hotspare.inventory.incidents import add_event

    fleet = fleet or loaded_fleet()
    plan, incident = preview_notice(incident_id, kind, approved=approved_by is not None, fleet=fleet)
    previous = records.notice(plan.notice_id)
    if not plan.decision.go:
        if previous is None or previous.state == "held":
            records.record_notice(plan.notice_id, incident_id, kind, plan.subject, "held", plan.decision.reason)
        if previous is None and plan.attention:
            # Customers are affected and not told: the timeline names it (internal, never on the page).
            add_event(
                incident_id,
                "notice_held",
                f"{kind} notice not sent: {plan.decision.reason}",
                details={
                    "notice": plan.notice_id,
                    "held": True,
                    "recipients": len(plan.recipients),
                    "services": list(plan.services),
                },
            )
        log.info("notice %s not sent: %s", plan.notice_id, plan.decision.reason)
        return {
            "notice": plan.notice_id,
            "sent": False,
            "reason": plan.decision.reason,
            "attention": plan.attention,
            "services": list(plan.services),
        }
    if fleet.mail is None:
        raise MissingConfiguration(
            "the fleet file has no mail section (smtp_block, sender): customer notices "
            "cannot be sent; add it and load the fleet again"
        )
    records.record_notice(plan.notice_id, incident_id, kind, plan.subject, "sending", plan.decision.reason, approved_by)
    started = time.monotonic()
    summary = _deliver(plan, incident, fleet, relay or smtp_relay(fleet.mail.smtp_block), messages_per_second, sleep)
    summary["seconds"] = round(time.monotonic() - started, 3)
    _record_outcome(plan, incident_id, kind, summary)
    return summary


def _deliver(plan, incident, fleet, relay, messages_per_second, sleep) -> dict:
    """Every recipient's delivery, at the section's rate, with retries of deferred ones."""
    from hotspare.inventory import notices as records
    from hotspare.inventory.models import utcnow
    from hotspare.planning.notices import message_id, render_message

    section, sender = fleet.customer_notices, fleet.mail.sender
    domain = sender.rpartition("@")[2]
    by_address = {recipient.email.lower(): recipient for recipient in plan.recipients}
    records.ensure_deliveries(
        plan.notice_id, [(r.email, r.name, message_id(plan.notice_id, r.email, domain)) for r in plan.recipients]
    )
    newly_uncertain = records.recover(plan.notice_id)
    holder = records.this_process()
    interval = 1.0 / (messages_per_second or section.messages_per_second)
    next_slot = time.monotonic()
    for round_number in range(ROUNDS):
        waiting = [row for row in records.deliveries(plan.notice_id) if row.state in ("pending", "deferred")]
        if not waiting:
            break
        if round_number:
            sleep(RETRY_BACKOFF_SECONDS * 2 ** (round_number - 1))
        for row in waiting:
            recipient = by_address.get(row.recipient)
            if recipient is None or not records.claim(row.id, holder):
                continue  # no longer a recipient (fleet changed), or another process has it
            sleep(max(0.0, next_slot - time.monotonic()))
            next_slot = time.monotonic() + interval
            try:
                message = _with_unsubscribe(
                    fleet, render_message(plan, recipient, incident, section, sender, utcnow()), recipient.email
                )
            except Exception as error:  # noqa: BLE001 -- one recipient's bad data never stops the others
                reason = f"the message could not be composed: {type(error).__name__}: {error}"
                records.advance(row.id, holder, "bounced", None, reason)
                log.error("delivery of %s to %s: bounced, %s", row.notice_id, row.address, reason)
                continue
            _send_claimed(relay, message, row, holder)
    rows = records.deliveries(plan.notice_id)
    return {
        "notice": plan.notice_id,
        "sent": True,
        "subject": plan.subject,
        "recipients": len(rows),
        "states": {
            state: sorted(r.address for r in rows if r.state == state)
            for state in ("sent", "bounced", "deferred", "uncertain", "pending", "sending")
            if any(r.state == state for r in rows)
        },
        "bounces": {r.address: f"{r.code} {r.reply}" if r.code else r.reply for r in rows if r.state == "bounced"},
        "newly_uncertain": [r.address for r in newly_uncertain],
    }


def _with_unsubscribe(fleet, message, address: str):
    """A status page subscriber's copy carries its own unsubscribe link (header and last line)."""
    from tasks.subscriptions import unsubscribe_link

    link = unsubscribe_link(fleet, address)
    if link:
        message.replace_header("List-Unsubscribe", f"<{link}>")
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message.set_content(message.get_content().rstrip("\n") + f"\nTo stop these updates: {link}\n")
    return message


def _send_claimed(relay, message, row, holder: str) -> None:
    """One claimed delivery: committing just before the dot, then the relay's verdict."""
    from hotspare.adapters.smtp import send_one
    from hotspare.inventory import notices as records

    committing = []

    def before_end_of_data() -> None:
        if not records.advance(row.id, holder, "committing"):
            raise HotspareError(f"lost the claim on the delivery to {row.address}")
        committing.append(True)

    try:
        reply = send_one(relay, message, row.address, before_end_of_data)
    except HotspareError as error:
        # After the dot the relay may have taken it: never resend (uncertain); before it, retry later.
        state = "uncertain" if committing else "deferred"
        records.advance(row.id, holder, state, None, str(error))
        log.warning("delivery of %s to %s: %s (%s)", row.notice_id, row.address, error, state)
        return
    except (ValueError, UnicodeError) as error:
        # This message cannot be sent as it is (an address or header the relay's dialogue refuses):
        # retrying would fail again, and it must not stop the other recipients.
        state = "uncertain" if committing else "bounced"
        records.advance(row.id, holder, state, None, f"not sendable: {type(error).__name__}: {error}")
        log.error("delivery of %s to %s: %s (%s)", row.notice_id, row.address, error, state)
        return
    state = "sent" if reply.accepted else ("bounced" if reply.permanent else "deferred")
    records.advance(row.id, holder, state, reply.code, reply.text)
    log.info("delivery of %s to %s: %s (%d %s)", row.notice_id, row.address, state, reply.code, reply.text)


def _record_outcome(plan, incident_id: int, kind: str, summary: dict) -> None:
    from hotspare.inventory import notices as records
    from hotspare.inventory.incidents import add_event

    states = summary["states"]
    counts = ", ".join(f"{len(addresses)} {state}" for state, addresses in states.items())
    text = f"{kind} notice to {summary['recipients']} customer contacts: {counts}"
    if summary["bounces"]:
        text += "; bounced: " + ", ".join(f"{address} ({reply})" for address, reply in summary["bounces"].items())
    if states.get("uncertain"):
        text += "; uncertain (check the relay's log, never resent): " + ", ".join(states["uncertain"])
    if not any(states.get(state) for state in ("pending", "deferred", "sending")):
        records.finish_notice(plan.notice_id, summary)
    add_event(incident_id, "notice", text, details=summary)


# ----- status page --------------------------------------------------------------------------


def status_page_facts(fleet, now, probe_timeout: float = 1.0):
    """PageFacts from the inventory: services as ``hotspare status`` sees them, incidents, drills."""
    from sqlmodel import select

    from hotspare.inventory import copies, session
    from hotspare.inventory.incidents import get_incident, list_incidents
    from hotspare.inventory.models import ServerRow, ServiceRow, as_utc
    from hotspare.planning.notices import customer_services
    from hotspare.planning.status_page import PageFacts
    from hotspare.probes import reachability
    from hotspare.status import copy_facts, service_status

    with session() as db:
        services = list(db.exec(select(ServiceRow).where(ServiceRow.retired == False).order_by(ServiceRow.name)))  # noqa: E712
        servers = {server.name: server for server in db.exec(select(ServerRow))}
    reachable = reachability({name: (s.address, s.ssh_port) for name, s in servers.items()}, probe_timeout)
    in_fleet = {service.name: service for service in fleet.services}
    facts = {
        service.name: copy_facts(
            service,
            copies.current_copy(service.name),
            copies.newest_verified(service.name),
            fleet.rpo_hours_of(in_fleet[service.name]) if service.name in in_fleet else fleet.defaults.rpo_hours,
            now,
        )
        for service in services
    }
    records = [
        record | {"last_drill": _last_drill(record["service"])} for record in service_status(services, servers, reachable, facts)
    ]
    shown = [
        item
        for item in list_incidents(limit=50)
        if not item["internal"]  # record-only incidents and redundant parts stay internal
        and (item["status"] != "resolved" or now - as_utc(_parse(item["resolved_at"])) < RESOLVED_SHOWN_FOR)
    ]
    section = fleet.customer_notices
    active = {service.name: service.active_server for service in services}
    # The services it made unavailable, recorded when it opened (as the notices tell them).
    incidents = tuple(
        incident | {"services": list(customer_services(incident, active))}
        for incident in (get_incident(item["id"]) for item in shown)
    )
    from tasks.subscriptions import customer_pages, public_references

    references = public_references(fleet, [incident["id"] for incident in incidents])
    incidents = tuple(incident | {"reference": references[incident["id"]]} for incident in incidents)
    return PageFacts(
        title="Service status",
        page_url=section.status_page.url if section.status_page else "",
        generated_at=now,
        emergency_numbers=tuple(section.emergency_numbers),
        services=tuple(records),
        incidents=incidents,
        customers=customer_pages(fleet),
        subscribe_url=(section.status_page.subscribe_url or None) if section.status_page else None,
    )


def _parse(iso: str):
    from datetime import datetime

    return datetime.fromisoformat(iso)


def _last_drill(service: str) -> dict | None:
    """The service's newest finished drill, if the drills subsystem is present."""
    try:
        from hotspare.inventory.drills import drills_of
    except ImportError:
        return None
    for row in drills_of(service, limit=10):
        if row.finished is not None:
            return {
                "started": row.started.isoformat(),
                "finished": row.finished.isoformat(),
                "outcome": row.outcome,
                "rto_seconds": row.rto_seconds,
            }
    return None


def publish_status_page(
    incident_id: int | None = None,
    fleet=None,
    attempts: int = PUBLISH_ATTEMPTS,
    backoff_seconds: float = PUBLISH_BACKOFF_SECONDS,
    connect_timeout: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict:
    """Render and upload the status page; retried with backoff; never raises.

    The outcome is noted in the timeline of ``incident_id`` (or, for a failure, of every open
    incident when none is given): ``status_publish`` when published, ``error`` when not.
    """
    from hotspare.access import loaded_fleet
    from hotspare.inventory.models import utcnow
    from hotspare.planning.status_page import render_status_pages

    try:
        fleet = fleet or loaded_fleet()
        target = fleet.customer_notices.status_page
        if target is None:
            return {"published": False, "reason": "the fleet file has no customer_notices.status_page"}
        files = render_status_pages(status_page_facts(fleet, utcnow()))
    except Exception as error:  # a side channel: say it, never raise into a failover
        log.exception("status page could not be prepared")
        return _publish_failed(incident_id, f"status page could not be prepared: {error}", 0)
    errors = []
    for attempt in range(1, attempts + 1):
        try:
            _upload(fleet, target, files, connect_timeout)
        except Exception as error:
            errors.append(str(error))
            log.warning("status page upload to %s, attempt %d of %d: %s", target.server, attempt, attempts, error)
            if not isinstance(error, TransientError) or attempt == attempts:
                break
            sleep(backoff_seconds * 2 ** (attempt - 1))
            continue
        result = {"published": True, "url": target.url, "server": target.server, "attempts": attempt, "files": sorted(files)}
        if incident_id is not None:
            _note(incident_id, "status_publish", f"status page published at {target.url}", result)
        return result
    return _publish_failed(
        incident_id, f"status page not published to {target.server} after {len(errors)} attempts: {errors[-1]}", len(errors)
    )


def _publish_failed(incident_id: int | None, text: str, attempts: int) -> dict:
    from hotspare.inventory.incidents import list_incidents

    result = {"published": False, "error": text, "attempts": attempts}
    targets = [incident_id] if incident_id is not None else [item["id"] for item in list_incidents(open_only=True)]
    for target in targets:
        _note(target, "error", text, result)
    return result


def _note(incident_id: int, kind: str, text: str, details: dict) -> None:
    from hotspare.inventory.incidents import add_event

    try:
        add_event(incident_id, kind, text, details=details)
    except Exception:
        log.exception("could not note %r in incident %s", text, incident_id)


def _upload(fleet, target, files: dict[str, str], connect_timeout: float) -> None:
    """Each file to a temporary name in the folder, then renamed over the old one (atomic on
    the server: a reader sees the old page or the new one, never half of one)."""
    from hotspare.access import connect

    with connect(fleet, target.server, connect_timeout=connect_timeout) as lease:
        # A shared connection can look alive through an outage, and opening SFTP has no bound of
        # its own: a bounded command first proves the link answers (any exit status: a certificate
        # forced into internal-sftp answers it with sftp's own, docs/trust-model.md).
        lease.run(["true"], timeout=connect_timeout, check=False)
        sftp = lease.open_sftp()
        sftp.get_channel().settimeout(max(connect_timeout, 5.0) * 3)
        try:
            token = secrets.token_hex(6)
            # Feeds first: a page links to its feed, so a new page never points at an old feed.
            for name in sorted(files, key=lambda name: (name.endswith("index.html"), name)):
                folder, _, base = f"{target.folder}/{name}".rpartition("/")
                _make_folders(sftp, folder)
                temporary = f"{folder}/.{base}.{token}.tmp"
                with sftp.open(temporary, "w") as handle:
                    handle.write(files[name].encode())
                sftp.chmod(temporary, 0o644)
                sftp.posix_rename(temporary, f"{folder}/{base}")
            _remove_old_customer_pages(sftp, target.folder, files)
        except OSError as error:
            raise TransientError(f"SFTP on {target.server} failed in {target.folder}: {error}") from None
        finally:
            sftp.close()


def _make_folders(sftp, folder: str) -> None:
    path = ""
    for part in folder.strip("/").split("/"):
        path += "/" + part
        try:
            sftp.stat(path)
        except FileNotFoundError:
            sftp.mkdir(path, 0o755)


def _remove_old_customer_pages(sftp, folder: str, files: dict[str, str]) -> None:
    """A customer page no longer published (customer gone, key replaced) is removed, so no stale
    page stays readable at an old address."""
    from hotspare.planning.status_page import CUSTOMER_FOLDER

    current = {name.split("/")[1] for name in files if name.startswith(f"{CUSTOMER_FOLDER}/") and name.count("/") == 2}
    base = f"{folder}/{CUSTOMER_FOLDER}"
    for entry in sftp.listdir(base):
        path = f"{base}/{entry}"
        if entry in current or entry == "index.html":
            continue
        try:
            for name in sftp.listdir(path):
                sftp.remove(f"{path}/{name}")
            sftp.rmdir(path)
        except OSError as error:
            log.warning("old customer page %s not removed: %s", path, error)
