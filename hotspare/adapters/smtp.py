"""SMTP adapter: composing a message is separate from sending it.

``compose`` is pure (testable without a server); ``send`` talks to the relay with a timeout and
classifies failures.
"""

from __future__ import annotations

import re
import smtplib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid

from hotspare.adapters.errors import PermanentError, TransientError


@dataclass(frozen=True)
class Relay:
    host: str
    port: int = 25
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    timeout: float = 10.0


def compose(sender: str, recipients: Sequence[str], subject: str, body: str, *, html: str | None = None) -> EmailMessage:
    """A ready-to-send message; no network."""
    if not recipients:
        raise ValueError("a message needs at least one recipient")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    # a header may not hold a line break (the standard library refuses, and it would be header
    # injection): a subject built from an incident title is folded to one line
    message["Subject"] = " ".join(subject.split())
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message.set_content(body)
    if html:
        message.add_alternative(html, subtype="html")
    return message


def send(relay: Relay, message: EmailMessage) -> None:
    """Hand ``message`` to the relay; TransientError if it may work later."""
    where = f"SMTP relay {relay.host}:{relay.port}"
    try:
        with smtplib.SMTP(relay.host, relay.port, timeout=relay.timeout) as client:
            if relay.starttls:
                client.starttls()
            if relay.username:
                client.login(relay.username, relay.password or "")
            client.send_message(message)
    except smtplib.SMTPAuthenticationError:
        raise PermanentError(f"{where} refused the login: check the SmtpServer block") from None
    except smtplib.SMTPRecipientsRefused as error:
        raise PermanentError(f"{where} refused the recipients {sorted(error.recipients)}") from None
    except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, TimeoutError, OSError) as error:
        raise TransientError(f"{where} unreachable: {error}") from None
    except smtplib.SMTPException as error:
        raise TransientError(f"{where} failed: {error}") from None


@dataclass(frozen=True)
class Reply:
    """The relay's answer for one recipient: accepted (2xx), refused for good (5xx) or for now (4xx)."""

    code: int
    text: str
    stage: str  # mail | rcpt | data | end-of-data

    @property
    def accepted(self) -> bool:
        return 200 <= self.code < 300

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600


def send_one(relay: Relay, message: EmailMessage, recipient: str, before_end_of_data: Callable[[], None]) -> Reply:
    """Hand ``message`` to the relay for exactly one recipient, in steps, and return its reply.

    The relay takes responsibility for a message only when it answers the end-of-data dot; a
    connection that drops before the dot leaves nothing behind (RFC 5321, 4.1.1.4). So
    ``before_end_of_data`` is called right before the dot is written: a sender that records that
    moment knows, after a crash, that a message without the record was never accepted, and one
    with it possibly was. TransientError when the relay cannot be reached or drops the line.
    """
    where = f"SMTP relay {relay.host}:{relay.port}"
    sender = str(message["From"])
    address = sender.rpartition("<")[2].rstrip(">") if "<" in sender else sender
    payload = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
    payload = re.sub(rb"(?m)^\.", b"..", payload)  # dot-stuffing (RFC 5321, 4.5.2)
    if not payload.endswith(b"\r\n"):
        payload += b"\r\n"
    try:
        with smtplib.SMTP(relay.host, relay.port, timeout=relay.timeout) as client:
            client.ehlo_or_helo_if_needed()
            if relay.starttls:
                client.starttls()
                client.ehlo()
            if relay.username:
                client.login(relay.username, relay.password or "")
            steps: tuple[tuple[str, Callable[[], tuple[int, bytes]]], ...] = (
                ("mail", lambda: client.mail(address)),
                ("rcpt", lambda: client.rcpt(recipient)),
                ("data", lambda: client.docmd("DATA")),
            )
            for stage, step in steps:
                code, text = step()
                if not 200 <= code < 400:
                    client.rset()
                    return Reply(code, _decoded(text), stage)
            client.send(payload)
            before_end_of_data()
            client.send(b".\r\n")
            code, text = client.getreply()
            return Reply(code, _decoded(text), "end-of-data")
    except smtplib.SMTPAuthenticationError:
        raise PermanentError(f"{where} refused the login: check the SmtpServer block") from None
    except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, TimeoutError, OSError) as error:
        raise TransientError(f"{where} unreachable or dropped the line: {error}") from None
    except smtplib.SMTPException as error:
        raise TransientError(f"{where} failed: {error}") from None


def _decoded(text: bytes | str) -> str:
    return text.decode(errors="replace") if isinstance(text, bytes) else str(text)
