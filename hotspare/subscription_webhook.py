"""The HTTP endpoint the customer status pages' e-mail form posts to: subscribe, confirm, unsubscribe.

``POST /subscribe`` (form: ``page``, ``email``) records a pending subscription and mails the
confirmation (``tasks/subscriptions.py``); ``GET /confirm?t=…`` shows a button and ``POST
/confirm`` confirms, so a mail scanner that opens links confirms nothing; ``/unsubscribe?s=…&t=…``
likewise (``POST`` also serves RFC 8058 one-click unsubscription). Every answer is a short page
that names no address and says the same whether an address was known or not. Request bodies
are capped at 4 KiB. Served by ``hotspare status-page subscriptions --listen HOST:PORT``.

Confirmation mails leave through a bounded queue drained by one worker thread (``Outbox``): a
request for a new address takes the same path and time as one for a known address (a mail sent
during the request told them apart by its SMTP round trip). Requests are bounded per client
address and mails overall (``planning/subscription_limits.py``); a refusal is logged and answered
like an acceptance. Errors show a fixed sentence; the detail goes to the log.
"""

from __future__ import annotations

import html
import logging
import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from hotspare.errors import HotspareError

log = logging.getLogger("hotspare.subscriptions")

MAX_BODY = 4096
OUTBOX_SIZE = 100  # confirmation mails waiting for the worker; beyond it a request is answered, not mailed


class Outbox:
    """Confirmation mails to send, in a bounded queue one worker thread drains."""

    def __init__(self, fleet, relay=None, size: int = OUTBOX_SIZE) -> None:
        self.fleet, self.relay = fleet, relay
        self.jobs: queue.Queue = queue.Queue(maxsize=size)
        self.worker = threading.Thread(target=self._drain, name="subscription mail", daemon=True)
        self.worker.start()

    def put(self, job) -> bool:
        """Queue ``job``; False when the queue is full (the caller logs it)."""
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            return False
        return True

    def _drain(self) -> None:
        from tasks import subscriptions

        while (job := self.jobs.get()) is not None:
            try:
                subscriptions.send_confirmation(self.fleet, job, self.relay)
            except Exception:
                log.exception("subscription %s: confirmation mail failed", job.number)

    def stop(self, timeout: float = 30.0) -> None:
        """Send what is queued, then end the worker (waits at most ``timeout`` seconds)."""
        try:
            self.jobs.put(None, timeout=timeout)
        except queue.Full:
            log.error("subscription mail queue still full after %.0f s; %d mails not sent", timeout, self.jobs.qsize())
        self.worker.join(timeout=timeout)


class SubscriptionServer(ThreadingHTTPServer):
    """The HTTP server with its outbox; ``shutdown`` stops both."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], outbox: Outbox) -> None:
        super().__init__(address, handler)
        self.outbox = outbox

    def shutdown(self) -> None:
        super().shutdown()
        self.outbox.stop()


def _page(title: str, body: str) -> bytes:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer"><meta name="robots" content="noindex">'
        f"<title>{html.escape(title)}</title><style>body{{font-family:system-ui,sans-serif;max-width:36em;"
        "margin:2em auto;padding:0 1em;line-height:1.45}button{font-size:1em;padding:.4em 1em}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>\n"
    ).encode()


def _button(action: str, fields: dict[str, str], label: str) -> str:
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">' for name, value in fields.items()
    )
    return f'<form method="post" action="{html.escape(action)}">{hidden}<button type="submit">{label}</button></form>'


def handler_for(fleet, relay=None, limits=None, outbox: Outbox | None = None) -> type[BaseHTTPRequestHandler]:
    """A request handler bound to ``fleet`` (and a relay, else the fleet's SmtpServer block),
    its request limits and its outbox (without one, mails are sent during the request)."""
    from tasks import subscriptions

    class Handler(BaseHTTPRequestHandler):
        server_version = "hotspare-subscriptions"
        sys_version = ""

        def log_message(self, format: str, *args) -> None:
            log.info("%s %s", self.address_string(), format % args)

        def _answer(self, status: int, title: str, body: str) -> None:
            payload = _page(title, body)
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Referrer-Policy", "no-referrer")
            self.end_headers()
            self.wfile.write(payload)

        def _form(self) -> dict[str, str] | None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._answer(413, "Too large", "<p>The request is too large.</p>")
                return None
            fields = parse_qs(self.rfile.read(length).decode("utf-8", "replace"), max_num_fields=10)
            query = parse_qs(urlsplit(self.path).query, max_num_fields=10)
            return {name: values[0] for name, values in {**query, **fields}.items()}

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {name: values[0] for name, values in parse_qs(parts.query, max_num_fields=10).items()}
            if parts.path == "/confirm" and query.get("t"):
                self._answer(
                    200,
                    "Confirm your subscription",
                    "<p>Press the button to receive incident updates at this address.</p>"
                    + _button("/confirm", {"t": query["t"]}, "Confirm"),
                )
            elif parts.path == "/unsubscribe" and query.get("s") and query.get("t"):
                self._answer(
                    200,
                    "Stop incident updates",
                    "<p>Press the button to stop the updates.</p>"
                    + _button("/unsubscribe", {"s": query["s"], "t": query["t"]}, "Unsubscribe"),
                )
            else:
                self._answer(404, "Not found", "<p>Nothing here.</p>")

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            form = self._form()
            if form is None:
                return
            try:
                if path == "/subscribe":
                    sentence = subscriptions.request_subscription(
                        fleet,
                        form.get("page", ""),
                        form.get("email", ""),
                        relay=relay,
                        client=self.client_address[0],
                        limits=limits,
                        outbox=outbox.put if outbox else None,
                    )
                    self._answer(200, "Check your mail", f"<p>{html.escape(sentence)}</p>")
                elif path == "/confirm":
                    row = subscriptions.confirm_subscription(form.get("t", ""))
                    if row is None:
                        self._answer(
                            400,
                            "Link not valid",
                            "<p>This link is unknown, used already or expired. Subscribe again on your status page.</p>",
                        )
                    else:
                        self._answer(
                            200,
                            "Subscribed",
                            "<p>You will receive incident updates by e-mail. Every message carries a link to stop them.</p>",
                        )
                elif path == "/unsubscribe":
                    number = form.get("s", "")
                    ended = number.isdigit() and subscriptions.end_subscription(fleet, int(number), form.get("t", ""))
                    if ended:
                        self._answer(200, "Unsubscribed", "<p>You will receive no more updates.</p>")
                    else:
                        self._answer(400, "Link not valid", "<p>This link is not valid.</p>")
                else:
                    self._answer(404, "Not found", "<p>Nothing here.</p>")
            except subscriptions.Refused as refusal:
                log.info("subscription request %s refused: %s", path, refusal)
                self._answer(400, "Not subscribed", f"<p>{html.escape(refusal.public)}</p>")
            except HotspareError as error:  # e.g. the status page key's block unreachable: one line, no traceback
                log.error("subscription request %s failed: %s", path, error)
                self._answer(503, "Try again later", "<p>Something went wrong on our side; try again later.</p>")
            except Exception:
                log.exception("subscription request %s failed", path)
                self._answer(500, "Try again later", "<p>Something went wrong on our side; try again later.</p>")

    return Handler


def serve(fleet, host: str, port: int, relay=None, limits=None) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Start the endpoint in a thread; the caller stops it with ``server.shutdown()`` (which
    also sends the queued confirmation mails and ends the mail worker). ``limits``: a
    ``RequestLimits`` (the defaults when None)."""
    from hotspare.planning.subscription_limits import RequestLimits

    outbox = Outbox(fleet, relay)
    server = SubscriptionServer((host, port), handler_for(fleet, relay, limits or RequestLimits(), outbox), outbox)
    thread = threading.Thread(target=server.serve_forever, name="subscription endpoint", daemon=True)
    thread.start()
    return server, thread
