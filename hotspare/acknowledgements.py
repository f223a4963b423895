"""hotspare's acknowledgement webhook: a keypress on a page call or an SMS reply stops paging.

Phone providers post here (``incidents.acknowledgement_url`` in the fleet file):

- ``/hotspare/acknowledge/call?incident=N&contact=NAME&provider=BLOCK`` with the call's
  ``Digits``: ``1`` acknowledges incident N on behalf of NAME;
- ``/hotspare/acknowledge/sms?provider=BLOCK`` with ``From`` and ``Body``: ``ACK 12``, ``ack``,
  ``ok`` or ``1`` acknowledges (incident 12, or the newest open one) on behalf of the contact
  whose number sent it.

Every request must carry a valid ``X-Twilio-Signature`` made with the named provider's auth
token over the public URL and the sorted form parameters; anything else is refused with 403
and changes nothing. ``handle`` is the whole decision (testable without a socket);
``serve`` runs it on a threaded HTTP server.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from hotspare.adapters.phone import signature_valid
from hotspare.inventory import incidents

log = logging.getLogger(__name__)
SMS_ACK = re.compile(r"^\s*(ack|ok|yes|1)\b\W*(?P<incident>\d+)?", re.IGNORECASE)


@dataclass(frozen=True)
class Reply:
    status: int
    twiml: str
    acknowledged: int | None = None  # the incident this request acknowledged first


def _say(text: str) -> str:
    return f"<Response><Say>{escape(text)}</Say></Response>"


def _digits_only(number: str) -> str:
    return re.sub(r"\D", "", number or "")


def handle(path: str, form: dict[str, str], signature: str | None, public_base: str, tokens: dict[str, str],
           contacts) -> Reply:
    """Verify and act on one webhook request (``path`` with its query string)."""
    split = urlsplit(path)
    query = {key: values[-1] for key, values in parse_qs(split.query).items()}
    token = tokens.get(query.get("provider", ""))
    if token is None or not signature_valid(token, public_base.rstrip("/") + path, form, signature):
        log.warning("refused an acknowledgement request to %s: bad or missing signature", split.path)
        return Reply(403, _say("Refused."))
    if split.path == "/hotspare/acknowledge/call":
        return _call(query, form)
    if split.path == "/hotspare/acknowledge/sms":
        return _sms(form, contacts)
    return Reply(404, _say("Unknown."))


def _call(query: dict, form: dict) -> Reply:
    try:
        incident_id = int(query["incident"])
    except (KeyError, ValueError):
        return Reply(400, _say("No incident named."))
    if form.get("Digits") != "1":
        return Reply(200, _say("Not acknowledged."))
    who = query.get("contact") or form.get("To", "?")
    return _acknowledge(incident_id, who, f"keypress 1 on call {form.get('CallSid', '?')}")


def _sms(form: dict, contacts) -> Reply:
    match = SMS_ACK.match(form.get("Body", ""))
    if match is None:
        return Reply(200, "<Response><Message>Reply ACK and the incident number to acknowledge.</Message></Response>")
    sender = _digits_only(form.get("From", ""))
    who = next((contact.name for contact in contacts if contact.phone and _digits_only(contact.phone) == sender),
               form.get("From", "?"))
    if match["incident"]:
        incident_id = int(match["incident"])
    else:
        open_incidents = incidents.list_incidents(open_only=True, limit=1)
        if not open_incidents:
            return Reply(200, "<Response><Message>No open incident.</Message></Response>")
        incident_id = open_incidents[0]["id"]
    return _acknowledge(incident_id, who, f"SMS reply from {form.get('From', '?')}")


def _acknowledge(incident_id: int, who: str, via: str) -> Reply:
    try:
        first = incidents.acknowledge(incident_id, who, via=via)
    except incidents.IncidentError as error:
        return Reply(200, _say(str(error)))
    if first:
        from hotspare.inventory.incidents import announce

        announce("acknowledged", incident_id)
    return Reply(200, _say(f"Incident {incident_id} acknowledged by {who}. Thank you."),
                 acknowledged=incident_id if first else None)


def provider_tokens(fleet) -> dict[str, str]:
    """Block name -> auth token of every phone provider the fleet names (blocks that load)."""
    from tasks.paging import load_providers

    providers, problems = load_providers(fleet)
    for problem in problems:
        log.error("%s", problem)
    return {provider.name: provider.auth_token for provider in providers}


def serve(fleet, host: str, port: int, public_base: str | None = None) -> ThreadingHTTPServer:
    """Start the webhook on ``host:port`` in a background thread; returns the server
    (``shutdown()`` stops it). ``public_base`` is the URL providers use (default: the fleet's)."""
    base = public_base or fleet.incidents.acknowledgement_url or f"http://{host}:{port}"
    tokens = provider_tokens(fleet)
    contacts = list(fleet.contacts)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(min(length, 65536)).decode(errors="replace") if length else ""
            form = {key: values[-1] for key, values in parse_qs(raw, keep_blank_values=True).items()}
            reply = handle(self.path, form, self.headers.get("X-Twilio-Signature"), base, tokens, contacts)
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
