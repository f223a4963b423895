"""Phone adapter: calls and SMS through providers speaking Twilio's REST shape, and the check of
their signed webhooks.

``send_sms`` / ``place_call`` POST form data to ``<base>/2010-04-01/Accounts/<sid>/Messages.json``
and ``/Calls.json`` with basic auth (account SID : auth token) and expect ``201`` with JSON
``{"sid": …, "status": …}``. Failures are classified like the other adapters: a provider that is
down, slow or overloaded (5xx, 429, connection errors, timeouts) is a ``TransientError``; a
refused login or a rejected request (other 4xx) a ``PermanentError``. ``deliver`` tries the
providers in the fleet's order and says which one carried the page and why the ones before it
did not, so the incident's timeline can show that a fallback was used.

``twilio_signature`` and ``signature_valid`` make and check ``X-Twilio-Signature`` with the
provider's own validator (``twilio.request_validator.RequestValidator``), not a copy of its
algorithm: the webhook accepts exactly what the provider signs, and the lab signs the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

import httpx
from twilio.request_validator import RequestValidator

from hotspare.adapters.errors import HotspareError, PermanentError, TransientError

API_VERSION = "2010-04-01"


@dataclass(frozen=True)
class Provider:
    """One provider account (from a ``PhoneProvider`` block)."""

    name: str  # the block's name, for messages and the incident's timeline
    base_url: str
    account_sid: str
    auth_token: str = field(repr=False)
    from_number: str
    timeout: float = 10.0


@dataclass(frozen=True)
class Delivery:
    """A page a provider accepted: its id there, its status, and the providers that failed first."""

    provider: str
    sid: str
    status: str
    failed_providers: tuple[str, ...] = ()  # sentences, one per provider tried before

    @property
    def used_fallback(self) -> bool:
        return bool(self.failed_providers)


def _post(provider: Provider, resource: str, form: dict[str, str]) -> dict:
    url = f"{provider.base_url.rstrip('/')}/{API_VERSION}/Accounts/{provider.account_sid}/{resource}.json"
    where = f"phone provider {provider.name} ({provider.base_url})"
    try:
        response = httpx.post(url, data=form, auth=(provider.account_sid, provider.auth_token), timeout=provider.timeout)
    except httpx.TimeoutException:
        raise TransientError(f"{where} did not answer within {provider.timeout:g} s") from None
    except httpx.TransportError as error:
        raise TransientError(f"{where} unreachable: {type(error).__name__}: {error}") from None
    if response.status_code in (401, 403):
        raise PermanentError(
            f"{where} refused the login (HTTP {response.status_code}): check the PhoneProvider block's account_sid and auth_token"
        )
    if response.status_code == 429 or response.status_code >= 500:
        raise TransientError(f"{where} is unavailable (HTTP {response.status_code})")
    if response.status_code != 201:
        raise PermanentError(f"{where} rejected the request (HTTP {response.status_code}): {_message_of(response)}")
    try:
        reply = response.json()
        return {"sid": str(reply["sid"]), "status": str(reply.get("status", ""))}
    except (ValueError, KeyError, TypeError):
        raise TransientError(f"{where} answered 201 without a JSON body naming a sid") from None


def _message_of(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message", ""))[:200] or response.text[:200]
    except ValueError:
        return response.text[:200]


def send_sms(provider: Provider, to: str, body: str, status_callback: str | None = None) -> dict:
    """Text ``body`` to ``to``; returns ``{"sid", "status"}``."""
    form = {"To": to, "From": provider.from_number, "Body": body}
    if status_callback:
        form["StatusCallback"] = status_callback
    return _post(provider, "Messages", form)


def place_call(
    provider: Provider, to: str, twiml: str, send_digits: str | None = None, status_callback: str | None = None
) -> dict:
    """Call ``to`` and play ``twiml`` (which gathers the acknowledging keypress); ``send_digits``
    dials an extension once the call connects. Returns ``{"sid", "status"}``."""
    form = {"To": to, "From": provider.from_number, "Twiml": twiml}
    if send_digits:
        form["SendDigits"] = send_digits
    if status_callback:
        form["StatusCallback"] = status_callback
    return _post(provider, "Calls", form)


def call_twiml(message: str, acknowledgement_url: str | None, approval: str | None = None) -> str:
    """TwiML that reads ``message`` and, with a webhook, asks for 1 to acknowledge and, when the
    call offers an approval, 2 to approve it (``approval``: what 2 approves, in words)."""
    if not acknowledgement_url:
        return f"<Response><Say>{escape(message)}</Say></Response>"
    offer = f" Press 2 to approve: {escape(approval)}." if approval else ""
    return (
        f'<Response><Gather numDigits="1" method="POST" action={quoteattr(acknowledgement_url)}>'
        f"<Say>{escape(message)} Press 1 to acknowledge.{offer}</Say></Gather>"
        f"<Say>No key pressed. Goodbye.</Say></Response>"
    )


def deliver(providers: Sequence[Provider], send: Callable[[Provider], dict]) -> Delivery:
    """Send through the first provider that accepts; each one that fails is named in the result.

    Any failure moves on to the next provider (a page matters more than telling failures apart
    here); when all fail, the error names every provider and is transient if any failure was.
    """
    if not providers:
        raise PermanentError(
            "no phone provider configured: list PhoneProvider blocks under incidents.phone_providers in the fleet file"
        )
    failures: list[str] = []
    transient = False
    for provider in providers:
        try:
            reply = send(provider)
        except HotspareError as error:
            failures.append(str(error))
            transient = transient or not error.permanent
            continue
        return Delivery(provider.name, reply["sid"], reply["status"], tuple(failures))
    error_class = TransientError if transient else PermanentError
    raise error_class("every phone provider failed: " + "; ".join(failures))


class _Form(dict):
    """Form parameters as the validator reads repeated ones (``getall``, like a MultiDict)."""

    def getall(self, name: str) -> list[str]:
        values = self[name]
        return [values] if isinstance(values, str) else list(values)


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str | Sequence[str]]) -> str:
    """The ``X-Twilio-Signature`` of a POST to ``url`` with form ``params``."""
    return RequestValidator(auth_token).compute_signature(url, _Form(params))


def signature_valid(auth_token: str, url: str, params: Mapping[str, str | Sequence[str]], signature: str | None) -> bool:
    """True when ``signature`` is the provider's signature of this request (its validator compares
    in constant time, with and without the URL's default port)."""
    if not signature or not auth_token:
        return False
    return RequestValidator(auth_token).validate(url, _Form(params), signature)
