"""hotspare's acknowledgement webhook: a keypress on a page call or an SMS reply stops paging.

Phone providers post here (``incidents.acknowledgement_url`` in the fleet file):

- ``/hotspare/acknowledge/call?incident=N&contact=NAME&provider=BLOCK`` with the call's
  ``CallSid`` and ``Digits``: ``1`` acknowledges the incident the call was placed for, on behalf
  of the contact it called. The call's SID decides both (``inventory/pages``), not the query;
- ``/hotspare/acknowledge/sms?provider=BLOCK`` with ``MessageSid``, ``From`` and ``Body``:
  ``ACK 12`` acknowledges incident 12; ``ack``, ``ok``, ``yes`` or ``1`` answers the newest page
  sent to that number.

A keypress ``2`` on a call, or an SMS ``APPROVE n``, approves a waiting failover plan that page
offered to an approver: ``phone_approvals.py`` decides that, with the same refusals below.

Who may acknowledge is enforced here, in this order, and every refusal is one logged sentence
(in the incident's timeline too, when the request names or answers one) that changes nothing:

1. the request carries a valid ``X-Twilio-Signature`` of the named provider, checked by the
   provider's own validator (``twilio.request_validator``): otherwise 403;
2. its SID (the message's or the call's) was never handled before: the inventory stores it,
   unique, so a replayed request is refused;
3. the sender's number (E.164, ``phonenumbers``) belongs to a contact on the chain of that
   incident's category (a keypress: the number the page called);
4. the incident is open and was paged at most ``incidents.acknowledgement_window_minutes`` ago
   (a keypress: its own call).

``handle`` is the whole decision (testable without a socket); ``serve`` runs it on a threaded
HTTP server.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from hotspare import phone_approvals
from hotspare.adapters.phone import signature_valid
from hotspare.fleet.incident_schema import chain_for
from hotspare.fleet.values import e164
from hotspare.inventory import incidents, pages
from hotspare.inventory.models import utcnow

log = logging.getLogger(__name__)
# An incident number has at most 18 digits (it fits the inventory's integer column); a longer
# one names no incident.
SMS_ACK = re.compile(r"^\s*(ack|ok|yes|1)\b\W*(?P<incident>\d{1,18}(?!\d))?", re.IGNORECASE)
MAX_BODY_BYTES = 65536  # a provider's form is a few hundred bytes
REQUEST_SECONDS = 10.0
SMS_HELP = "<Response><Message>Reply ACK and the incident number to acknowledge.</Message></Response>"


@dataclass(frozen=True)
class Reply:
    status: int
    twiml: str
    acknowledged: int | None = None  # the incident this request acknowledged first


def _say(text: str) -> str:
    return f"<Response><Say>{escape(text)}</Say></Response>"


def _number(text: str) -> str | None:
    """``text`` in E.164, or None when it is no international number."""
    try:
        return e164(text or "")
    except ValueError:
        return None


def chain_numbers(fleet, category: int) -> dict[str, str]:
    """E.164 number -> contact name (or the bare number) of every step on ``category``'s chain."""
    chain = chain_for(fleet.incidents, category, list(fleet.escalation))
    contacts = {contact.name: contact for contact in fleet.contacts}
    numbers: dict[str, str] = {}
    for step in chain.steps if chain else ():
        contact = contacts.get(step.contact) if step.contact else None
        written = step.number or (contact.phone if contact else None)
        number = _number(written) if written else None
        if number:
            numbers.setdefault(number, str(step.contact or written))
    return numbers


def handle(
    path: str,
    form: dict[str, str],
    signature: str | None,
    public_base: str,
    tokens: dict[str, str],
    fleet,
    now: datetime | None = None,
) -> Reply:
    """Verify and act on one webhook request (``path`` with its query string)."""
    split = urlsplit(path)
    query = {key: values[-1] for key, values in parse_qs(split.query).items()}
    provider = query.get("provider", "")
    token = tokens.get(provider)
    if token is None or not signature_valid(token, public_base.rstrip("/") + path, form, signature):
        log.warning("refused an acknowledgement request to %s: bad or missing signature", split.path)
        return Reply(403, _say("Refused."))
    window = timedelta(minutes=fleet.incidents.acknowledgement_window_minutes)
    moment = now or utcnow()
    if split.path == "/hotspare/acknowledge/call":
        return _call(provider, form, fleet, moment, window)
    if split.path == "/hotspare/acknowledge/sms":
        return _sms(provider, form, fleet, moment, window)
    return Reply(404, _say("Unknown."))


def _call(provider: str, form: dict, fleet, now: datetime, window: timedelta) -> Reply:
    call_sid = form.get("CallSid", "")
    page = pages.page_by_sid(provider, call_sid) if call_sid else None
    if page is None:
        return _refuse(
            None,
            f"refused a keypress on call {call_sid or '(no CallSid)'} through {provider}: hotspare placed no such call",
            _say("Not acknowledged."),
        )
    if form.get("Digits") == "2":  # approve the plans this call offered (and acknowledge)
        said, approved = phone_approvals.by_keypress(provider, page, call_sid, fleet, now, window, _note, _not_allowed)
        return _acknowledge_approval(page.incident_id, page.contact, approved, said, f"keypress 2 on call {call_sid}")
    if form.get("Digits") != "1":
        return Reply(200, _say("Not acknowledged."))
    if not pages.claim_request(provider, call_sid, "call", page.number):
        return _refuse(
            page.incident_id,
            f"refused a replayed keypress on call {call_sid} to {page.contact}: that call was already answered",
            _say("Already handled."),
        )
    problem = _not_allowed(fleet, page.incident_id, page.number, now - page.sent_at, window, "its call")
    if problem:
        return _refuse(
            page.incident_id,
            f"refused a keypress on call {call_sid} to {page.contact} for incident {page.incident_id}: {problem}",
            _say("Not acknowledged."),
        )
    return _acknowledge(page.incident_id, page.contact, f"keypress 1 on call {call_sid}")


def _sms(provider: str, form: dict, fleet, now: datetime, window: timedelta) -> Reply:
    approve = phone_approvals.SMS_APPROVE.match(form.get("Body", ""))
    if approve:
        said, _approved = phone_approvals.by_sms(provider, form, approve, fleet, now, window, _note, _not_allowed)
        return Reply(200, f"<Response><Message>{escape(said)}</Message></Response>")
    message_sid, sender = form.get("MessageSid", ""), form.get("From", "?")
    match = SMS_ACK.match(form.get("Body", ""))
    number = _number(sender)
    named = int(match["incident"]) if match and match["incident"] else None
    incident_id, unanswered = (named, "") if named is not None else _answered(number, sender, now, window)
    known = incident_id if incident_id is not None and _status(incident_id) is not None else None
    if not message_sid:
        return _refuse(known, f"refused an SMS from {sender} through {provider}: it carries no MessageSid", SMS_HELP)
    if not pages.claim_request(provider, message_sid, "sms", sender):
        return _refuse(
            known, f"refused a replayed SMS {message_sid} from {sender}: that message was already handled", "<Response/>"
        )
    if match is None or number is None:
        why = "not an acknowledgement" if match is None else "not an international number"
        return _refuse(known, f"ignored an SMS from {sender} ({why})", SMS_HELP)
    if incident_id is None:
        return _refuse(None, f"refused an SMS acknowledgement from {sender}: {unanswered}", SMS_HELP)
    latest = pages.latest_page_of(incident_id) if known is not None else None
    problem = _not_allowed(fleet, incident_id, number, now - latest.sent_at if latest else None, window, "its newest page")
    if problem:
        return _refuse(
            known,
            f"refused an SMS acknowledgement of incident {incident_id} from {sender}: {problem}",
            "<Response><Message>Not acknowledged.</Message></Response>",
        )
    who = chain_numbers(fleet, incidents.get_incident(incident_id)["category"])[number]
    return _acknowledge(incident_id, who, f"SMS reply from {sender}")


def _answered(number: str | None, sender: str, now: datetime, window: timedelta) -> tuple[int | None, str]:
    """The incident whose page to ``number`` a bare reply answers, or None and why not: the one
    still waiting for an acknowledgement, else the one open (acknowledged, a second reply)."""
    statuses = {page.incident_id: _status(page.incident_id) for page in (pages.pages_to(number, now - window) if number else [])}
    for wanted in (("triggered",), ("triggered", "acknowledged")):
        candidates = sorted(incident for incident, status in statuses.items() if status in wanted)
        if len(candidates) == 1:
            return candidates[0], ""
        if candidates:
            return None, f"pages of incidents {', '.join(map(str, candidates))} went to {sender}: it must name one"
    return None, f"it answers no page sent to {sender} in the last {_minutes(window)}"


def _status(incident_id: int) -> str | None:
    try:
        return incidents.get_incident(incident_id)["status"]
    except incidents.IncidentError:
        return None


def _minutes(window: timedelta) -> str:
    return f"{window.total_seconds() / 60:g} min"


def _not_allowed(
    fleet, incident_id: int, number: str, since_page: timedelta | None, window: timedelta, page_name: str
) -> str | None:
    """Why ``number`` may not acknowledge ``incident_id`` now, or None when it may."""
    status = _status(incident_id)
    if status is None:
        return "there is no such incident"
    if status == "resolved":
        return "the incident is already resolved"
    incident = incidents.get_incident(incident_id)
    if number not in chain_numbers(fleet, incident["category"]):
        return f"{number} belongs to no contact on the category {incident['category']} chain"
    if since_page is None:
        return "the incident was never paged"
    if since_page > window:
        return f"{page_name} went out {since_page.total_seconds() / 60:.0f} min ago, past the {_minutes(window)} window"
    return None


def _refuse(incident_id: int | None, sentence: str, twiml: str) -> Reply:
    """Log the refusal (in the incident's timeline when there is one); nothing else changes."""
    log.warning("%s", sentence)
    if incident_id is not None and _status(incident_id) is not None:
        incidents.add_event(incident_id, "note", sentence, details={"acknowledgement_refused": True})
    return Reply(200, twiml)


def _note(incident_id: int | None, sentence: str) -> None:
    """A refusal's sentence, logged (and in the incident's timeline when there is one)."""
    _refuse(incident_id, sentence, "")


def _acknowledge_approval(incident_id: int, who: str, approved: list[str], said: str, via: str) -> Reply:
    """After an approval by keypress: the incident is acknowledged by the approver too."""
    if not approved:
        return Reply(200, _say(said))
    reply = _acknowledge(incident_id, who, via)
    return Reply(200, _say(said), acknowledged=reply.acknowledged)


def _acknowledge(incident_id: int, who: str, via: str) -> Reply:
    try:
        first = incidents.acknowledge(incident_id, who, via=via)
    except incidents.IncidentError as error:
        return Reply(200, _say(str(error)))
    if first:
        from hotspare.inventory.incidents import announce

        announce("acknowledged", incident_id)
    return Reply(
        200, _say(f"Incident {incident_id} acknowledged by {who}. Thank you."), acknowledged=incident_id if first else None
    )


def provider_tokens(fleet) -> dict[str, str]:
    """Block name -> auth token of every phone provider the fleet names (blocks that load)."""
    from tasks.paging import load_providers

    providers, problems = load_providers(fleet)
    for problem in problems:
        log.error("%s", problem)
    return {provider.name: provider.auth_token for provider in providers}


def _fleet_now(started_with):
    """The fleet as loaded now (who is on a chain, who may approve, changes with `fleet load`
    without restarting the webhook); the one it started with when the inventory has none."""
    try:
        from hotspare.access import loaded_fleet

        return loaded_fleet()
    except Exception as error:  # the inventory unreachable: the chain as it was at start
        log.warning("using the fleet as it was when the webhook started: %s", error)
        return started_with


def serve(fleet, host: str, port: int, public_base: str | None = None) -> ThreadingHTTPServer:
    """Start the webhook on ``host:port`` in a background thread; returns the server
    (``shutdown()`` stops it). ``public_base`` is the URL providers use (default: the fleet's)."""
    base = public_base or fleet.incidents.acknowledgement_url or f"http://{host}:{port}"
    tokens = provider_tokens(fleet)

    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_SECONDS  # a client that sends slowly (or not at all) cannot hold a thread

        def log_message(self, *_args) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY_BYTES:  # read(-1) would read until the client stops
                log.warning(
                    "refused an acknowledgement request to %s: body of %s bytes (at most %d)",
                    urlsplit(self.path).path,
                    self.headers.get("Content-Length"),
                    MAX_BODY_BYTES,
                )
                reply = Reply(413, _say("Refused."))
            else:
                raw = self.rfile.read(length).decode(errors="replace") if length else ""
                form = {key: values[-1] for key, values in parse_qs(raw, keep_blank_values=True).items()}
                reply = handle(self.path, form, self.headers.get("X-Twilio-Signature"), base, tokens, _fleet_now(fleet))
            data = reply.twiml.encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="hotspare-acknowledgements", daemon=True).start()
    return server
