"""How many subscription requests the public form may cause: per client, and mails overall.

The form on the customer pages is open to anybody who knows a page address. Without bounds one
client makes the hoster's relay mail any number of third parties (each request for a new
address is one confirmation mail, from the hoster's own domain). ``RequestLimits`` keeps, in
memory of the endpoint's process, a sliding window of requests per client address and of
confirmation mails queued overall; the caller asks before it acts and logs a refusal. A refused
request is answered like an accepted one (the same sentence): the answer never says whether an
address was known, nor whether a limit was reached.

Pure: the caller passes the time (monotonic seconds) in; no clock, no network. Thread-safe (the
endpoint answers each request in its own thread). The per-client table is bounded: the clients
seen longest ago are forgotten first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field

# Defaults: a person subscribes one or two addresses; a burst beyond this is not a person.
CLIENT_REQUESTS = 5
CLIENT_WINDOW_SECONDS = 15 * 60.0
MAILS_PER_HOUR = 60
MAIL_WINDOW_SECONDS = 3600.0
MAX_CLIENTS = 10_000


@dataclass
class RequestLimits:
    """Sliding windows: ``client_requests`` per client in ``client_window``, ``mails`` in ``mail_window``."""

    client_requests: int = CLIENT_REQUESTS
    client_window: float = CLIENT_WINDOW_SECONDS
    mails: int = MAILS_PER_HOUR
    mail_window: float = MAIL_WINDOW_SECONDS
    max_clients: int = MAX_CLIENTS
    _clients: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict, repr=False)
    _mails: deque[float] = field(default_factory=deque, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def allow_request(self, client: str, now: float) -> str | None:
        """Count one request of ``client``; None when it may go on, else why not (for the log)."""
        with self._lock:
            seen = self._clients.pop(client, None) or deque()
            _forget_before(seen, now - self.client_window)
            self._clients[client] = seen  # most recently seen last
            while len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)
            if len(seen) >= self.client_requests:
                return (
                    f"client {client} made {len(seen)} requests in the last "
                    f"{self.client_window / 60:.0f} minutes (at most {self.client_requests})"
                )
            seen.append(now)
            return None

    def allow_mail(self, now: float) -> str | None:
        """Count one confirmation mail; None when it may be sent, else why not (for the log)."""
        with self._lock:
            _forget_before(self._mails, now - self.mail_window)
            if len(self._mails) >= self.mails:
                return (
                    f"{len(self._mails)} confirmation mails in the last {self.mail_window / 60:.0f} minutes "
                    f"(at most {self.mails})"
                )
            self._mails.append(now)
            return None


def _forget_before(moments: deque[float], oldest: float) -> None:
    while moments and moments[0] <= oldest:
        moments.popleft()
