"""Replacement requests for hot-swappable parts: when to open and close one, and its text.

Pure (no network, no clock). A disk, power supply or fan judged degraded or failed opens one
request (unless one is open for that part); the request closes when the judge has counted the
part ok again for ``successes_to_recover`` rounds (its state is back to ``ok``). The message to
the facility's remote hands is composed here and sent by the flow through the SMTP adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hotspare.planning.health import ComponentStatus
from hotspare.planning.readings import ComponentState

SWAP_NOTE = "hot-swappable, do not power off"


@dataclass(frozen=True)
class ReplacementPlan:
    """Parts to open requests for and request keys (subject, component) to close."""

    open: tuple[ComponentStatus, ...] = ()
    close: tuple[tuple[str, str], ...] = ()
    decisions: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReplacementRequest:
    """What the remote hands need to find and swap the part."""

    server: str
    facility: str
    location: str
    part_kind: str
    component: str
    slot: str
    serial: str
    model: str
    evidence: str
    state: str
    extra: dict[str, Any] = field(default_factory=dict)

    def subject_line(self) -> str:
        return f"Replacement request: {self.part_kind.replace('_', ' ')} {self.slot or self.component} in {self.server} ({self.facility})"

    def body(self, hands_name: str = "") -> str:
        lines = [
            f"Hello{(' ' + hands_name) if hands_name else ''},",
            "",
            f"please replace a {self.state} {self.part_kind.replace('_', ' ')} ({SWAP_NOTE}).",
            "",
            f"Server:    {self.server}",
            f"Facility:  {self.facility}",
            f"Location:  {self.location or 'not recorded'}",
            f"Part:      {self.part_kind} ({self.component})",
            f"Slot/bay:  {self.slot or 'see component'}",
            f"Serial:    {self.serial or 'unknown'}",
            f"Model:     {self.model or 'unknown'}",
            f"Evidence:  {self.evidence}",
            "",
            f"The part is {SWAP_NOTE}: swap it while the server runs. We close this request by ourselves",
            "once the new part reads healthy.",
        ]
        return "\n".join(lines) + "\n"


def plan_replacements(statuses: list[ComponentStatus], open_requests: set[tuple[str, str]]) -> ReplacementPlan:
    """Open a request per degraded/failed replaceable part without one; close requests whose
    part is ok again (the judge's recovery already took ``successes_to_recover`` rounds)."""
    to_open, to_close, decisions = [], [], []
    by_key = {status.key: status for status in statuses}
    for status in statuses:
        if not status.kind.replaceable or status.key in open_requests:
            continue
        if status.state in (ComponentState.degraded, ComponentState.failed):
            to_open.append(status)
            decisions.append(
                f"opening a replacement request for {status.subject} {status.component} ({status.state.value}): {status.evidence}"
            )
    for key in sorted(open_requests):
        reading = by_key.get(key)
        if reading is not None and reading.state == ComponentState.ok:
            to_close.append(key)
            decisions.append(f"closing the replacement request for {key[0]} {key[1]}: it reads healthy again")
    return ReplacementPlan(tuple(to_open), tuple(to_close), tuple(decisions))


def request_for(status: ComponentStatus, facility: str, location: str) -> ReplacementRequest:
    """The request for one part, from its judged status and the server's place."""
    part = status.part or {}
    slot = part.get("slot") or part.get("bay") or status.component.split(":", 1)[-1]
    return ReplacementRequest(
        server=status.subject,
        facility=facility,
        location=location or part.get("location", ""),
        part_kind=status.kind.value,
        component=status.component,
        slot=slot,
        serial=part.get("serial", ""),
        model=part.get("model", ""),
        evidence=status.evidence,
        state=status.state.value,
        extra={key: value for key, value in part.items() if key not in ("slot", "bay", "serial", "model", "location")},
    )
