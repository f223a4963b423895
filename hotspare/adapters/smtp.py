"""SMTP adapter: composing a message is separate from sending it.

``compose`` is pure (testable without a server); ``send`` talks to the relay with a timeout and
classifies failures.
"""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Sequence
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
    message["Subject"] = subject
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
    except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, socket.timeout, TimeoutError, OSError) as error:
        raise TransientError(f"{where} unreachable: {error}") from None
    except smtplib.SMTPException as error:
        raise TransientError(f"{where} failed: {error}") from None
