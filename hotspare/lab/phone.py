"""The lab's phone provider: a recording endpoint in Twilio's REST shape on 127.0.0.1.

No carrier is reachable from the lab, so this endpoint stands in for two provider accounts:
``primary`` at ``http://127.0.0.1:<port>`` and ``fallback`` at ``http://127.0.0.1:<port>/fallback``.
``POST …/2010-04-01/Accounts/<sid>/Calls.json`` and ``Messages.json`` check basic auth, append
one JSON object per request to ``logs/phone.jsonl`` and answer ``201 {"sid", "status":
"queued"}`` — or ``503`` while the account is switched down.

Control requests (tests and the demo, loopback only):

- ``POST /lab/providers/<primary|fallback>/down`` and ``…/up``: the provider-down switch;
- ``POST /lab/calls/<CallSid>/answer?digits=1``: the callee answers and presses a key; the
  endpoint posts ``Digits`` to the call's ``<Gather action=…>`` URL, signed with Twilio's own
  ``RequestValidator`` (``adapters.phone.twilio_signature``);
- ``POST /lab/sms-replies`` with JSON ``{"provider", "from", "body", "url"}``: an inbound SMS,
  posted (signed) to ``url``.

Started by ``Lab.up`` (``start``), stopped by PID by ``Lab.down`` (``stop``).
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from hotspare.adapters.phone import twilio_signature

PHONE_PORT_BASE = 7460  # slot n listens on 127.0.0.1:7460+n
PROVIDERS = {"primary": "", "fallback": "/fallback"}  # account -> path prefix
FROM_NUMBERS = {"primary": "+15550900", "fallback": "+15550901"}
BLOCK_NAMES = {"primary": "lab-phone-primary", "fallback": "lab-phone-fallback"}
START_SECONDS = 15.0
API_PATH = re.compile(r"^(?P<prefix>/fallback)?/2010-04-01/Accounts/(?P<sid>[A-Za-z0-9]+)/(?P<kind>Calls|Messages)\.json$")
GATHER_ACTION = re.compile(r'<Gather[^>]*\baction="(?P<url>[^"]+)"')


def port_of(slot: int) -> int:
    return PHONE_PORT_BASE + slot


# ----- the server (runs in its own process) ----------------------------------------------------


class _State:
    def __init__(self, log_path: Path, accounts: dict):
        self.log_path = log_path
        self.accounts = accounts  # name -> {"sid", "token"}
        self.down: set[str] = set()
        self.calls: dict[str, dict] = {}  # CallSid -> {"provider", "form"}
        self.lock = threading.Lock()

    def record(self, entry: dict) -> None:
        with self.lock, self.log_path.open("a") as log:
            log.write(json.dumps({"at": time.time(), **entry}) + "\n")


class _Handler(BaseHTTPRequestHandler):
    state: _State  # set on the class by serve()

    def log_message(self, *_args) -> None:  # the .jsonl log is the record
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode() if length else ""
        path = urlsplit(self.path).path
        match = API_PATH.match(path)
        if match:
            return self._api(match, {key: values[-1] for key, values in parse_qs(raw).items()})
        if path.startswith("/lab/"):
            return self._control(path, parse_qs(urlsplit(self.path).query), raw)
        self._reply(404, {"message": f"no such resource {path}"})

    def _api(self, match: re.Match, form: dict) -> None:
        provider = "fallback" if match["prefix"] else "primary"
        kind = "call" if match["kind"] == "Calls" else "sms"
        account = self.state.accounts[provider]
        entry = {"provider": provider, "kind": kind, "path": match.string, "form": form}
        if match["sid"] != account["sid"] or not self._authorized(account):
            self.state.record({**entry, "status": 401})
            return self._reply(401, {"code": 20003, "message": "Authenticate"})
        if provider in self.state.down:
            self.state.record({**entry, "status": 503})
            return self._reply(503, {"code": 20500, "message": "Service Unavailable"})
        sid = ("CA" if kind == "call" else "SM") + secrets.token_hex(16)
        if kind == "call":
            with self.state.lock:
                self.state.calls[sid] = {"provider": provider, "form": form}
        self.state.record({**entry, "status": 201, "sid": sid})
        self._reply(201, {"sid": sid, "status": "queued", "to": form.get("To"), "from": form.get("From")})

    def _authorized(self, account: dict) -> bool:
        expected = base64.b64encode(f"{account['sid']}:{account['token']}".encode()).decode()
        return secrets.compare_digest(self.headers.get("Authorization", ""), f"Basic {expected}")

    def _control(self, path: str, query: dict, raw: str) -> None:
        parts = path.strip("/").split("/")
        if len(parts) == 4 and parts[1] == "providers" and parts[2] in PROVIDERS and parts[3] in ("down", "up"):
            with self.state.lock:
                (self.state.down.add if parts[3] == "down" else self.state.down.discard)(parts[2])
            self.state.record({"kind": "control", "path": path})
            return self._reply(200, {"provider": parts[2], "down": parts[3] == "down"})
        if len(parts) == 4 and parts[1] == "calls" and parts[3] == "answer":
            return self._answer(parts[2], query.get("digits", ["1"])[-1])
        if parts == ["lab", "sms-replies"]:
            request = json.loads(raw or "{}")
            provider = request.get("provider", "primary")
            form = {
                "MessageSid": "SM" + secrets.token_hex(16),
                "AccountSid": self.state.accounts[provider]["sid"],
                "From": request["from"],
                "To": FROM_NUMBERS[provider],
                "Body": request["body"],
            }
            return self._deliver_webhook(provider, request["url"], form, "sms_reply")
        self._reply(404, {"message": f"no such control {path}"})

    def _answer(self, call_sid: str, digits: str) -> None:
        with self.state.lock:
            call = self.state.calls.get(call_sid)
        if call is None:
            return self._reply(404, {"message": f"no call {call_sid}"})
        action = GATHER_ACTION.search(call["form"].get("Twiml", ""))
        if action is None:
            return self._reply(409, {"message": f"call {call_sid} gathers no keypress"})
        url = action["url"].replace("&amp;", "&")
        provider = call["provider"]
        form = {
            "CallSid": call_sid,
            "AccountSid": self.state.accounts[provider]["sid"],
            "From": call["form"].get("From", ""),
            "To": call["form"].get("To", ""),
            "CallStatus": "in-progress",
            "Digits": digits,
        }
        self._deliver_webhook(provider, url, form, "keypress")

    def _deliver_webhook(self, provider: str, url: str, form: dict, kind: str) -> None:
        signature = twilio_signature(self.state.accounts[provider]["token"], url, form)
        try:
            response = httpx.post(url, data=form, headers={"X-Twilio-Signature": signature}, timeout=10)
            status, text = response.status_code, response.text[:500]
        except httpx.HTTPError as error:
            status, text = 0, f"{type(error).__name__}: {error}"
        # the signature is kept so that a test can replay the exact request an eavesdropper saw
        self.state.record(
            {"kind": kind, "provider": provider, "url": url, "form": form, "signature": signature, "webhook_status": status}
        )
        self._reply(200, {"webhook_status": status, "webhook_body": text})


def serve(port: int, log_path: Path, accounts_path: Path) -> None:
    accounts = json.loads(accounts_path.read_text())
    _Handler.state = _State(log_path, accounts)
    server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    server.daemon_threads = True
    server.serve_forever()


# ----- lab hooks (run in the process that starts and stops the lab) ----------------------------


def accounts(lab) -> dict:
    """The two provider accounts, made once per lab folder (0600, beside secrets.json)."""
    path = lab.directory / "phone-accounts.json"
    if not path.exists():
        made = {name: {"sid": "AC" + secrets.token_hex(16), "token": secrets.token_hex(16)} for name in PROVIDERS}
        path.touch(mode=0o600)
        path.write_text(json.dumps(made, indent=2) + "\n")
    return json.loads(path.read_text())


def start(lab) -> None:
    """Start the endpoint, record its PID in the lab's state, wait until it answers."""
    import sys

    from hotspare.lab.probes import wait_until
    from hotspare.lab.processes import start_daemon
    from hotspare.probes import tcp_reachable

    stop(lab)
    accounts(lab)
    port = port_of(lab.slot)
    log_path = lab.directory / "logs" / "phone.jsonl"
    log_path.write_text("")
    argv = [
        sys.executable,
        "-m",
        "hotspare.lab.phone",
        "--port",
        str(port),
        "--log",
        str(log_path),
        "--accounts",
        str(lab.directory / "phone-accounts.json"),
    ]
    daemon, process = start_daemon("phone endpoint", argv, argv, lab.directory / "logs" / "phone-server.log", slot=lab.slot)
    lab._update_state(phone=daemon.to_json())
    wait_until(
        f"phone endpoint on 127.0.0.1:{port}",
        lambda: tcp_reachable("127.0.0.1", port, timeout=0.5),
        START_SECONDS,
        log_path=daemon.log,
        alive=lambda: process.poll() is None,
    )


def stop(lab) -> None:
    """Stop the endpoint recorded in the lab's state, by PID (if it still runs our command line)."""
    from hotspare.lab.processes import Daemon, stop_daemon

    recorded = (lab._read_state() or {}).get("phone")
    if recorded:
        stop_daemon(Daemon.from_json(recorded))


def describe(lab) -> dict:
    """The env entry: the request log, and where tests control the endpoint."""
    port = port_of(lab.slot)
    return {
        "log": str(lab.directory / "logs" / "phone.jsonl"),
        "port": port,
        "control": f"http://127.0.0.1:{port}/lab",
        "providers": {
            name: {"block": BLOCK_NAMES[name], "base_url": f"http://127.0.0.1:{port}{prefix}", "from_number": FROM_NUMBERS[name]}
            for name, prefix in PROVIDERS.items()
        },
    }


def blocks(lab) -> dict:
    """PhoneProvider blocks for both accounts (saved by ``Lab.register_blocks``)."""
    from blocks.credentials import PhoneProvider

    made = accounts(lab)
    port = port_of(lab.slot)
    return {
        BLOCK_NAMES[name]: PhoneProvider(
            base_url=f"http://127.0.0.1:{port}{prefix}",
            account_sid=made[name]["sid"],
            auth_token=made[name]["token"],
            from_number=FROM_NUMBERS[name],
        )
        for name, prefix in PROVIDERS.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="The lab's recording phone provider endpoint.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--accounts", type=Path, required=True)
    arguments = parser.parse_args()
    serve(arguments.port, arguments.log, arguments.accounts)


if __name__ == "__main__":
    main()


class PhoneControl:
    """What a test does with the endpoint: read its requests, switch a provider down, answer a
    call with a keypress, send an SMS reply. Built from the lab env (``env["phone"]``)."""

    def __init__(self, env: dict):
        self.log_path = Path(env["phone"]["log"])
        self.control = env["phone"]["control"]

    def requests(self, kind: str | None = None) -> list[dict]:
        """Every recorded request, oldest first (``kind``: call, sms, keypress, sms_reply, control)."""
        lines = self.log_path.read_text().splitlines() if self.log_path.exists() else []
        entries = [json.loads(line) for line in lines if line.strip()]
        return [entry for entry in entries if kind is None or entry.get("kind") == kind]

    def set_down(self, provider: str, down: bool = True) -> None:
        httpx.post(f"{self.control}/providers/{provider}/{'down' if down else 'up'}", timeout=5).raise_for_status()

    def answer(self, call_sid: str, digits: str = "1") -> dict:
        """The callee picks up and presses ``digits``; returns the webhook's status and body."""
        response = httpx.post(f"{self.control}/calls/{call_sid}/answer", params={"digits": digits}, timeout=15)
        response.raise_for_status()
        return response.json()

    def replay(self, kind: str) -> httpx.Response:
        """Post the newest recorded webhook request of ``kind`` (keypress, sms_reply) again, exactly
        as it was sent, signature included: what someone who captured it could do."""
        entry = self.requests(kind)[-1]
        return httpx.post(entry["url"], data=entry["form"], headers={"X-Twilio-Signature": entry["signature"]}, timeout=15)

    def sms_reply(self, from_number: str, body: str, url: str, provider: str = "primary") -> dict:
        response = httpx.post(
            f"{self.control}/sms-replies", timeout=15, json={"provider": provider, "from": from_number, "body": body, "url": url}
        )
        response.raise_for_status()
        return response.json()


ACKNOWLEDGEMENT_PORT_BASE = 7480  # slot n: hotspare's acknowledgement webhook on 127.0.0.1:7480+n
OFFICE_NUMBER = "+15550150"
LAB_WAIT_SECONDS = 3  # short, so the lab walks a chain in seconds


def acknowledgement_port(slot: int) -> int:
    return ACKNOWLEDGEMENT_PORT_BASE + slot


def fleet_contacts() -> list[dict]:
    """Contacts the lab adds to the fleet: the office line, and a colleague whose number is not
    known yet (not in the chain: the fleet check refuses a call step to a contact without a
    phone; the paging planner would report and skip such a step)."""
    return [
        {"name": "Office", "role": "office line", "phone": OFFICE_NUMBER, "email": "office@ops.lab.test"},
        {"name": "Sam Spare", "role": "emergency contact (number not yet known)"},
    ]


def fleet_section(slot: int) -> dict:
    """The lab fleet's ``incidents`` section: the written plan's category 1 chain (office,
    office extension 0, then the cell phones in order), short waits, both phone providers."""
    wait = LAB_WAIT_SECONDS
    return {
        "chains": [
            {
                "category": 1,
                "rounds": 2,
                "steps": [
                    {"action": "call", "contact": "Office", "wait_seconds": wait},
                    {"action": "call", "contact": "Office", "digits": "0", "wait_seconds": wait},
                    {"action": "call", "contact": "Dana Ops", "wait_seconds": wait},
                    {"action": "call", "contact": "Lee Lead", "wait_seconds": wait},
                    {"action": "sms", "contact": "Dana Ops", "wait_seconds": wait},
                ],
            }
        ],
        "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "UTC"},
        "phone_providers": [BLOCK_NAMES["primary"], BLOCK_NAMES["fallback"]],
        "acknowledgement_url": f"http://127.0.0.1:{acknowledgement_port(slot)}",
    }
