"""Pure planning of a reprotect: which server becomes the service's new mirror, or why not.

Reprotect stops nothing on production, but it turns a server into a mirror that replication
then overwrites: it is gated like a failover (plan, digest, approval; the plan made again under
the lock must be the approved one). Facts in (the inventory's layout, the fleet's facilities,
whether the chosen server still serves the app), a plan out. No Prefect, no network.
"""

from __future__ import annotations

from dataclasses import dataclass

from hotspare.planning.approval import plan_digest

REPROTECTABLE = ("failed-over", "unprotected", "reprotecting")


@dataclass(frozen=True)
class ReprotectPlan:
    service: str
    state: str
    production: str
    new_mirror: str | None
    new_mirror_facility: str | None
    refusal: str | None = None

    @property
    def digest(self) -> str:
        return plan_digest(
            {
                "service": self.service,
                "state": self.state,
                "production": self.production,
                "new_mirror": self.new_mirror,
                "facility": self.new_mirror_facility,
                "refusal": self.refusal,
            }
        )

    def markdown(self) -> str:
        lines = [f"# Reprotect plan for {self.service}", "", f"- state: {self.state}; production: {self.production}"]
        if self.refusal:
            lines.append(f"- refused: {self.refusal}")
        else:
            lines += [
                f"- new mirror: {self.new_mirror} (facility {self.new_mirror_facility}); its copy of {self.service} "
                "is replaced by a verified replication from production",
                f"- then: {self.service} is protected again ({self.production} -> {self.new_mirror})",
            ]
        lines += ["", f"Plan digest: `{self.digest}` (approve with this digest)"]
        return "\n".join(lines)


def plan_reprotect(
    service: str,
    state: str,
    production: str,
    requested_mirror: str | None,
    previous_production: str | None,
    facility_of: dict[str, str],
    mirror_serves_app: bool,
) -> ReprotectPlan:
    """The new mirror (``requested_mirror``, else the server the service failed over from), or the refusal."""
    new_mirror = requested_mirror or previous_production
    facility = facility_of.get(new_mirror) if new_mirror else None

    def refused(reason: str) -> ReprotectPlan:
        return ReprotectPlan(service, state, production, new_mirror, facility, reason)

    if state not in REPROTECTABLE:
        return refused(f"{service} is {state}; reprotect is for a failed-over or unprotected service")
    if not new_mirror:
        return refused(f"no mirror given and no previous production known for {service}: pass mirror=SERVER (--mirror)")
    if new_mirror not in facility_of:
        return refused(f"no server {new_mirror!r} in the fleet")
    if new_mirror == production:
        return refused(f"{new_mirror} is the active production of {service}; choose another server")
    if facility == facility_of.get(production):
        return refused(f"{new_mirror} is in the same facility as the production {production}")
    if mirror_serves_app:
        return refused(
            f"{new_mirror} still serves {service}: that would be two productions (split brain). Stop the app "
            "there (its deactivate commands), then reprotect again."
        )
    return ReprotectPlan(service, state, production, new_mirror, facility)
