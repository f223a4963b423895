"""The lab's SMTP sink: aiosmtpd's maildir handler, plus addresses that refuse mail on purpose.

Customer notices must record a bounce (a 5xx answer) and retry a temporary refusal (4xx).
Real relays answer both; the lab's sink does for chosen local parts, so tests can see it:

- ``bounce-…@any.domain``: every RCPT is refused with 550 (no such mailbox);
- ``defer-…@any.domain``: every other RCPT for that address is refused with 451 (the first,
  third, …), so a sender that retries once gets its message through.

Every other address is accepted and stored in the maildir as before.
"""

from __future__ import annotations

from collections import Counter

from aiosmtpd.handlers import Mailbox


class LabMailbox(Mailbox):
    """``aiosmtpd.handlers.Mailbox`` with refusing addresses (``-c hotspare.lab.mail_sink.LabMailbox DIR``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._attempts: Counter[str] = Counter()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local_part = address.partition("@")[0].lower()
        if local_part.startswith("bounce-"):
            return f"550 5.1.1 <{address}>: no such mailbox here"
        if local_part.startswith("defer-"):
            self._attempts[address.lower()] += 1
            if self._attempts[address.lower()] % 2 == 1:
                return f"451 4.3.0 <{address}>: mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"
