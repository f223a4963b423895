"""The fleet file's ``incidents`` section: who is called, in which order, and through whom.

The written plan: for a category 1 emergency (a server) call the office number; if nobody
answers, the same number with extension 0; if nobody answers, the emergency contacts' cell
phones in order. Each category has its own chain of ordered steps; each step waits
``wait_seconds`` for an acknowledgement (a keypress on the call, an SMS reply, ``hotspare
incident ack``) before the next one; the whole chain is walked ``rounds`` times; an
acknowledgement stops it. Low-severity incidents page nobody during quiet hours unless the
chain says so.

Calls and SMS go through phone providers (Prefect ``PhoneProvider`` blocks, Twilio's REST
shape): the first that answers is used, the next ones are fallbacks.

Compatible with the older top-level ``escalation: [contact, …]`` list: a category without a
chain here calls those contacts' phones in that order (see ``chain_for``).
"""

from __future__ import annotations

from enum import Enum

from pydantic import Field, model_validator

from hotspare.fleet.base import Name, Strict
from hotspare.fleet.values import PhoneNumber, TimeZone, Url

TIME_OF_DAY = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
DIGITS = r"^[0-9*#w]{1,20}$"  # DTMF digits; 'w' waits half a second (Twilio's sendDigits)


class StepAction(str, Enum):
    """What one step of a chain does."""

    call = "call"  # a voice call; the person presses 1 to acknowledge
    sms = "sms"  # a text message; a reply acknowledges
    email = "email"  # an e-mail through the fleet's mail relay (no acknowledgement channel)


class EscalationStep(Strict):
    """One step: call or text a contact (or a bare number), then wait for an acknowledgement."""

    action: StepAction = Field(description="call, sms or email.")
    contact: str | None = Field(default=None, min_length=1, description="Contact (by name) to reach.")
    number: PhoneNumber | None = Field(default=None, description="A number to call instead of a contact's (e.g. the office).")
    digits: str | None = Field(
        default=None, pattern=DIGITS, description="Extension dialled once the call connects (DTMF), e.g. '0'."
    )
    wait_seconds: float = Field(default=120, ge=0, description="How long to wait for an acknowledgement before the next step.")

    @model_validator(mode="after")
    def _one_target(self) -> EscalationStep:
        if (self.contact is None) == (self.number is None):
            raise ValueError("a step names either a contact or a number (exactly one)")
        if self.action is StepAction.email and self.contact is None:
            raise ValueError("an email step names a contact (whose email address is used)")
        if self.digits and self.action is not StepAction.call:
            raise ValueError("digits (an extension) only apply to a call")
        return self


class QuietHours(Strict):
    """Local night time during which low-severity incidents page nobody."""

    start: str = Field(default="22:00", pattern=TIME_OF_DAY, description="Start, HH:MM local time.")
    end: str = Field(default="07:00", pattern=TIME_OF_DAY, description="End, HH:MM local time.")
    timezone: TimeZone = Field(default="UTC", description="IANA time zone of start and end, e.g. Europe/Berlin.")


class EscalationChain(Strict):
    """The ordered steps for one incident category."""

    category: int = Field(ge=1, le=3, description="1 = a server, 2 = programming, 3 = a customer's problem.")
    steps: list[EscalationStep] = Field(min_length=1, description="Steps in order, first done first.")
    rounds: int = Field(default=2, ge=1, le=10, description="How many times the whole chain is walked.")
    page_low_severity_in_quiet_hours: bool = Field(
        default=False, description="Page low-severity incidents during quiet hours too."
    )


class Incidents(Strict):
    """Escalation chains, quiet hours and the phone providers that carry the pages."""

    chains: list[EscalationChain] = Field(default_factory=list, description="One chain per category.")
    quiet_hours: QuietHours = Field(default_factory=QuietHours, description="Night time for low severity.")
    phone_providers: list[Name] = Field(
        default_factory=list, description="PhoneProvider blocks, in order: the first is used, the next are fallbacks."
    )
    acknowledgement_url: Url | None = Field(
        default=None,
        description="Public base URL of hotspare's acknowledgement webhook (providers post keypresses and SMS replies).",
    )
    acknowledgement_window_minutes: float = Field(
        default=60,
        gt=0,
        le=7 * 24 * 60,
        description="A keypress or SMS reply counts only this long after the page it answers (the incident's newest page).",
    )
    open_on_degraded: bool = Field(default=True, description="Open a low-severity category 1 incident when a part is degraded.")

    @model_validator(mode="after")
    def _one_chain_per_category(self) -> Incidents:
        categories = [chain.category for chain in self.chains]
        duplicates = sorted({category for category in categories if categories.count(category) > 1})
        if duplicates:
            raise ValueError(f"more than one chain for category {', '.join(map(str, duplicates))}")
        return self


def chain_for(incidents: Incidents, category: int, escalation: list[str]) -> EscalationChain | None:
    """The chain of ``category``; else the top-level ``escalation`` contacts' phones, called in order."""
    for chain in incidents.chains:
        if chain.category == category:
            return chain
    if not escalation:
        return None
    return EscalationChain(category=category, steps=[EscalationStep(action=StepAction.call, contact=name) for name in escalation])
