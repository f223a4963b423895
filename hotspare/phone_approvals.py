"""Approving a waiting failover from the phone: keypress 2 on a page call, or ``APPROVE n`` by SMS.

The acknowledgement webhook (``acknowledgements.py``) has checked the provider's signature; this
module decides the rest, and every refusal is one sentence in the incident's timeline that
changes nothing:

1. the request's SID was never handled before (a replay is refused by the inventory);
2. the page it answers offered plans to approve (``inventory/approvals``): a keypress approves
   what its own call offered, an SMS ``APPROVE n`` what was offered to the sender's number;
3. the person is a contact marked ``may_approve`` in the fleet file *now*, and their number is on
   the incident's chain, within the acknowledgement window of the page;
4. the plan still waits with the digest that was offered, unexpired: ``approvals.decide`` marks
   it approved atomically (of two approvers at once, one decides).

Then the waiting run is resumed with the same answer the form takes (approve, the digest, the
person's name), so the runbook's own gate checks the digest once more and records the person.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta

from hotspare.fleet.values import e164
from hotspare.inventory import approvals, incidents, pages

log = logging.getLogger(__name__)

SMS_APPROVE = re.compile(r"^\s*approve\s+(?P<approval>\d{1,18})(?!\d)", re.IGNORECASE)


def approver(fleet, name: str) -> bool:
    """``name`` is a contact the fleet file lets approve failovers."""
    return any(contact.name == name and getattr(contact, "may_approve", False) for contact in fleet.contacts)


def by_keypress(
    provider: str, page, call_sid: str, fleet, now: datetime, window: timedelta, refuse, allowed
) -> tuple[str, list[str]]:
    """Keypress 2 on ``page`` (the call ``call_sid``): (what to say, services approved)."""
    if not pages.claim_request(provider, call_sid, "call", page.number):
        refuse(
            page.incident_id, f"refused a replayed keypress on call {call_sid} to {page.contact}: that call was already answered"
        )
        return "Already handled.", []
    offers = approvals.offers_in(provider, call_sid)
    problem = (
        ("this call offered no failover plan to approve" if not offers else None)
        or _not_an_approver(fleet, page.contact)
        or allowed(fleet, page.incident_id, page.number, now - page.sent_at, window, "its call")
    )
    if problem:
        refuse(page.incident_id, f"refused an approval by keypress on call {call_sid} to {page.contact}: {problem}")
        return "Not approved.", []
    return _approve(offers, page.contact, f"keypress 2 on call {call_sid}", now, refuse)


def by_sms(
    provider: str, form: dict, match: re.Match, fleet, now: datetime, window: timedelta, refuse, allowed
) -> tuple[str, list[str]]:
    """An SMS ``APPROVE n``: (the reply, services approved)."""
    message_sid, sender = form.get("MessageSid", ""), form.get("From", "?")
    number = _number(sender)
    offers = approvals.offers_of(int(match["approval"]), number) if number else []
    incident_id = offers[0].incident_id if offers else None
    if not message_sid:
        refuse(incident_id, f"refused an SMS from {sender} through {provider}: it carries no MessageSid")
        return "Not approved.", []
    if not pages.claim_request(provider, message_sid, "sms", sender):
        refuse(incident_id, f"refused a replayed SMS {message_sid} from {sender}: that message was already handled")
        return "Already handled.", []
    if not offers:
        refuse(None, f"refused an SMS approval from {sender}: plan {match['approval']} was never offered to that number")
        return "Not approved.", []
    newest = offers[0]
    problem = _not_an_approver(fleet, newest.contact) or allowed(
        fleet, newest.incident_id, newest.number, now - newest.offered_at, window, "its offer"
    )
    if problem:
        refuse(newest.incident_id, f"refused an SMS approval of plan {newest.approval.id} from {sender}: {problem}")
        return "Not approved.", []
    return _approve([newest], newest.contact, f"SMS reply from {sender}", now, refuse)


def _number(text: str) -> str | None:
    try:
        return e164(text or "")
    except ValueError:
        return None


def _not_an_approver(fleet, name: str) -> str | None:
    if approver(fleet, name):
        return None
    return f"{name} may not approve failovers (the fleet file does not mark them may_approve)"


def _approve(offers: list[approvals.Offer], who: str, via: str, now: datetime, refuse) -> tuple[str, list[str]]:
    """Decide and resume each offered plan; (what to say, services approved)."""
    approved, said = [], []
    for offer in offers:
        plan = offer.approval
        if not approvals.decide(plan.id, offer.digest, who, via, now):
            current = approvals.get_approval(plan.id)
            why = (
                f"it was already {current.status}" + (f" by {current.decided_by}" if current and current.decided_by else "")
                if current and current.status != approvals.WAITING
                else "the plan expired or changed since it was offered"
            )
            refuse(offer.incident_id, f"refused {who}'s approval of the failover of {plan.service} (plan {offer.digest}): {why}")
            said.append(f"The failover of {plan.service} was not approved: {why}.")
            continue
        problem = _resume(plan.flow_run_id, offer.digest, who)
        if problem:
            approvals.undecide(plan.id)
            refuse(offer.incident_id, f"could not resume the failover of {plan.service} for {who}: {problem}")
            said.append(f"The failover of {plan.service} could not be started: {problem}.")
            continue
        incidents.add_event(
            offer.incident_id,
            "approval",
            f"{who} approved the failover of {plan.service} (plan {offer.digest}: {plan.sentence}) by {via}",
            actor=who,
            details={"service": plan.service, "digest": offer.digest, "flow_run_id": plan.flow_run_id, "via": via},
        )
        log.warning("%s approved the failover of %s (plan %s) by %s", who, plan.service, offer.digest, via)
        approved.append(plan.service)
        said.append(f"Approved: {plan.sentence}.")
    return " ".join(said), approved


def _resume(flow_run_id: str, digest: str, who: str) -> str | None:
    """Resume the waiting run with the form's answer; a sentence when that failed."""
    from prefect.exceptions import ObjectNotFound
    from prefect.flow_runs import resume_flow_run

    try:
        resume_flow_run(flow_run_id, run_input={"decision": "approve", "plan_digest": digest, "operator": who})
    except ObjectNotFound:
        return f"its run {flow_run_id} no longer exists in Prefect"
    except Exception as error:  # the run ended meanwhile, or the API is unreachable
        return f"{type(error).__name__}: {str(error)[:200]}"
    return None
