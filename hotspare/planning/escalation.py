"""Escalation: who to page next, and when, for an open incident. Pure: no network, no clock.

``plan_escalation`` turns a fleet chain (``incident_schema.EscalationChain``) and the fleet's
contacts into the ordered list of pages (every round), reporting each step that cannot be done
(a contact without a phone number or e-mail address, an unknown contact) and skipping it.
``next_action`` says what to do at a given moment: send the next page, wait (how long), stop
(acknowledged) or give up (every page sent, nobody answered). The paging flow calls it in a
loop with the elapsed time and the pages already sent; the wait after a page counts from when
that page actually went out, so a slow provider never squeezes the next person's time.

``paging_decision`` applies quiet hours: a low-severity incident pages nobody at night unless
the chain says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hotspare.planning.replication import Decision


@dataclass(frozen=True)
class Page:
    """One page to send: a call, an SMS or an e-mail, then a wait for an acknowledgement."""

    index: int  # position in the whole walk, 0-based over every round
    round: int  # 1-based
    step: int  # 1-based position in the chain
    action: str  # call | sms | email
    target: str  # the contact's name, or the bare number the step names
    address: str  # the number to call or text, or the e-mail address
    digits: str | None  # extension dialled after the call connects
    wait_seconds: float

    def describe(self) -> str:
        via = f" extension {self.digits}" if self.digits else ""
        who = self.target if self.target == self.address else f"{self.target} ({self.address})"
        verb = {"call": "call", "sms": "text", "email": "e-mail"}[self.action]
        return f"round {self.round} step {self.step}: {verb} {who}{via}, then wait {self.wait_seconds:g} s"


@dataclass(frozen=True)
class EscalationPlan:
    """Every page in order, and a sentence for each step that cannot be done (skipped)."""

    pages: tuple[Page, ...]
    skipped: tuple[str, ...]


@dataclass(frozen=True)
class NextAction:
    """What the paging loop does now: ``page``, ``wait``, ``stop`` or ``exhausted``."""

    kind: str
    page: Page | None
    wait_seconds: float
    reason: str


def plan_escalation(chain, contacts: Iterable) -> EscalationPlan:
    """The pages of ``chain`` for every round, with each unreachable step named and skipped.

    ``chain`` is an ``EscalationChain`` (steps with action, contact or number, digits,
    wait_seconds; rounds); ``contacts`` the fleet's contacts (name, phone, email).
    """
    by_name = {contact.name: contact for contact in contacts}
    pages: list[Page] = []
    skipped: list[str] = []
    for round_number in range(1, chain.rounds + 1):
        for step_number, step in enumerate(chain.steps, start=1):
            action = getattr(step.action, "value", step.action)
            address, problem = _address_of(step, action, by_name)
            if problem:
                if round_number == 1:
                    skipped.append(f"step {step_number} ({action} {step.contact or step.number}): {problem}; skipped")
                continue
            pages.append(
                Page(
                    index=len(pages),
                    round=round_number,
                    step=step_number,
                    action=action,
                    target=step.contact or step.number,
                    address=address,
                    digits=step.digits,
                    wait_seconds=float(step.wait_seconds),
                )
            )
    return EscalationPlan(tuple(pages), tuple(skipped))


def _address_of(step, action: str, contacts: Mapping) -> tuple[str, str]:
    """(number or e-mail address, "") or ("", why the step cannot be done)."""
    if step.number:
        return step.number, ""
    contact = contacts.get(step.contact)
    if contact is None:
        return "", f"no contact called {step.contact!r} in the fleet file (add them under contacts)"
    if action == "email":
        return (contact.email, "") if contact.email else ("", f"{contact.name} has no e-mail address in the fleet file")
    if not contact.phone:
        return "", f"{contact.name} has no phone number in the fleet file"
    return contact.phone, ""


def next_action(plan: EscalationPlan, elapsed_seconds: float, sent: Mapping[int, float], acknowledged: bool) -> NextAction:
    """What to do ``elapsed_seconds`` after paging began, given the pages ``sent`` so far
    (page index -> elapsed seconds when it went out) and whether somebody acknowledged."""
    if acknowledged:
        return NextAction("stop", None, 0.0, f"acknowledged after {len(sent)} page(s); paging stops")
    if not plan.pages:
        return NextAction("exhausted", None, 0.0, "nobody can be paged: the chain has no reachable step")
    pending = [page for page in plan.pages if page.index not in sent]
    if not pending:
        last = plan.pages[-1]
        remaining = sent[last.index] + last.wait_seconds - elapsed_seconds
        if remaining > 0:
            return NextAction("wait", None, remaining, f"waiting {remaining:.0f} s for an answer to the last page")
        rounds = plan.pages[-1].round
        return NextAction("exhausted", None, 0.0, f"nobody acknowledged after {len(plan.pages)} page(s) in {rounds} round(s)")
    page = pending[0]
    previous = plan.pages[page.index - 1] if page.index > 0 else None
    due = 0.0 if previous is None else sent.get(previous.index, elapsed_seconds) + previous.wait_seconds
    if elapsed_seconds >= due:
        return NextAction("page", page, 0.0, page.describe())
    remaining = due - elapsed_seconds
    return NextAction("wait", page, remaining, f"waiting {remaining:.0f} s before: {page.describe()}")


def in_quiet_hours(moment: datetime, start: str, end: str, zone: str) -> bool:
    """True when ``moment`` (an aware datetime) falls in [start, end) local time; the window
    may span midnight (22:00–07:00)."""
    try:
        local = moment.astimezone(ZoneInfo(zone)).time()
    except ZoneInfoNotFoundError:
        local = moment.time()  # an unknown zone is a fleet-file error; read as UTC meanwhile
    begin, finish = _time_of(start), _time_of(end)
    if begin == finish:
        return False
    if begin < finish:
        return begin <= local < finish
    return local >= begin or local < finish


def _time_of(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def paging_decision(severity: str, chain, quiet_hours, moment: datetime) -> Decision:
    """Whether to page now: high severity always; low severity not in quiet hours unless the
    chain pages low severity at night too. ``chain`` None: nobody to page."""
    if chain is None:
        return Decision(False, "no escalation chain for this category and no escalation contacts in the fleet file")
    if severity != "low":
        return Decision(True, f"{severity} severity: paging now")
    window = f"{quiet_hours.start}–{quiet_hours.end} {quiet_hours.timezone}"
    if not in_quiet_hours(moment, quiet_hours.start, quiet_hours.end, quiet_hours.timezone):
        return Decision(True, f"low severity outside quiet hours ({window}): paging now")
    if chain.page_low_severity_in_quiet_hours:
        return Decision(True, f"low severity in quiet hours ({window}), and the chain pages at night: paging now")
    return Decision(
        False, f"low severity during quiet hours ({window}): nobody is paged now; the incident stays open for the morning shift"
    )
