"""One orchestrator per fleet: who holds the fleet, and whether this orchestrator may act.

Every orchestrator (an inventory: the demo's SQLite file, the control site's PostgreSQL) has an
identity of its own (``Identity``: a random id made with the inventory, a readable name, the
fleet id and epoch it last held). The fleet's holder is written in one place every orchestrator
of that fleet must reach to act at all: a TXT record ``_hotspare-orchestrator.<zone>`` in the
fleet's first zone (``Marker``), changed only by a TSIG-signed compare-and-swap. ``decide``
compares the two and returns what to do, with the sentence that says why. Pure: no network,
no inventory, no clock (times and new ids come in as arguments).

    decide(identity, marker, reachable=True)          -> act | claim | refuse | warn
    decide(identity, marker, takeover=True)           -> claim with the next epoch
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

RECORD_LABEL = "_hotspare-orchestrator"
FORMAT = "hotspare-orchestrator=1"
_UNSAFE = re.compile(r"[^A-Za-z0-9@._:/+=-]")


def record_name(zone: str) -> str:
    """The marker's owner name in ``zone``."""
    return f"{RECORD_LABEL}.{zone.rstrip('.')}"


def marker_zone(zone_names: list[str]) -> str | None:
    """The zone holding the marker: the fleet's first zone by name (the same for every copy of
    the fleet file, whatever order it lists them in); None for a fleet without zones."""
    return min((name.rstrip(".") for name in zone_names), default=None)


def safe_text(text: str, limit: int = 120) -> str:
    """``text`` reduced to characters a TXT string and a log line carry unquoted."""
    return _UNSAFE.sub("_", text)[:limit]


@dataclass(frozen=True)
class Identity:
    """This orchestrator, as its inventory knows it."""

    orchestrator_id: str
    name: str
    fleet_id: str | None = None
    epoch: int = 0  # the epoch it last held (0: never held the fleet)
    lost_to: str | None = None  # the holder's name when a takeover was seen


@dataclass(frozen=True)
class Marker:
    """The fleet's holder as the marker record says."""

    fleet_id: str
    orchestrator_id: str
    epoch: int
    name: str
    since: str  # ISO time of the claim

    def strings(self) -> list[str]:
        """The TXT record's strings, one ``key=value`` each."""
        return [
            FORMAT,
            f"fleet={self.fleet_id}",
            f"orchestrator={self.orchestrator_id}",
            f"epoch={self.epoch}",
            f"name={safe_text(self.name)}",
            f"since={safe_text(self.since, 40)}",
        ]

    def describe(self) -> str:
        return f"{self.name} (orchestrator {self.orchestrator_id[:8]}, epoch {self.epoch}, since {self.since})"


def parse_marker(strings: list[str]) -> Marker | None:
    """The marker a TXT record's strings hold; None when they are not a marker of this format."""
    if not strings or strings[0] != FORMAT:
        return None
    fields = dict(part.partition("=")[::2] for part in strings[1:])
    try:
        return Marker(
            fields["fleet"], fields["orchestrator"], int(fields["epoch"]), fields.get("name", "?"), fields.get("since", "?")
        )
    except (KeyError, ValueError):
        return None


@dataclass(frozen=True)
class Decision:
    """What an orchestrator does now, and the sentence that says why.

    ``act``: it holds the fleet; ``claim``: write ``new_marker`` (compare-and-swap against
    ``expected``) and then act; ``refuse``: another holds it, or nothing can be verified;
    ``warn``: a read-only command goes on but says what it found."""

    kind: Literal["act", "claim", "refuse", "warn"]
    sentence: str
    new_marker: Marker | None = None
    expected: Marker | None = None
    holder: Marker | None = None


def decide(
    identity: Identity,
    marker: Marker | None,
    *,
    reachable: bool = True,
    takeover: bool = False,
    read_only: bool = False,
    new_fleet_id: str = "",
    now: str = "",
) -> Decision:
    """Whether ``identity`` may act on the fleet whose marker reads ``marker``.

    - No marker yet: the first orchestrator to act claims the fleet (epoch 1, or one past its own).
    - The marker names this orchestrator: act (whatever epoch the inventory remembered).
    - It names another: refuse and name it, unless ``takeover`` (the operator's deliberate
      ``hotspare fleet claim --takeover``): claim with the next epoch, same fleet id.
    - The marker's server does not answer: an orchestrator that held the fleet at its last check
      acts and says so (acting needs DNS anyway: a failover moves users through it, and refusing
      to page because DNS is down would hide the outage itself); one that never held it refuses.
    Read-only callers get ``warn`` instead of ``refuse``.
    """
    me = identity.name
    if not reachable:
        if identity.epoch > 0 and identity.lost_to is None:
            return Decision(
                "act",
                f"the fleet's orchestrator marker could not be read; {me} held the fleet at "
                f"epoch {identity.epoch} at its last check and acts on that",
            )
        return _refusal(
            read_only,
            f"the fleet's orchestrator marker could not be read and {me} has never held "
            f"this fleet; it acts only once it can claim the fleet "
            f"(`hotspare fleet claim` when the DNS server answers)",
        )
    if marker is not None and marker.orchestrator_id == identity.orchestrator_id:
        return Decision("act", f"{me} holds the fleet (epoch {marker.epoch})", holder=marker)
    if marker is None:
        claimed = Marker(identity.fleet_id or new_fleet_id, identity.orchestrator_id, identity.epoch + 1, me, now)
        if read_only:
            return Decision("warn", "nobody holds the fleet yet; the first run that acts claims it for " + me)
        return Decision("claim", f"nobody held the fleet: {me} claims it (epoch {claimed.epoch})", new_marker=claimed)
    if takeover and not read_only:
        claimed = Marker(marker.fleet_id, identity.orchestrator_id, marker.epoch + 1, me, now)
        return Decision(
            "claim",
            f"{me} takes the fleet over from {marker.describe()} (epoch {claimed.epoch})",
            new_marker=claimed,
            expected=marker,
            holder=marker,
        )
    return _refusal(
        read_only,
        f"this orchestrator ({me}) does not hold the fleet: {marker.describe()} does, "
        f"so {me} neither acts nor pages. Point commands at that orchestrator "
        f"(its PREFECT_API_URL and HOTSPARE_DB_URL), or, only if it is really lost, "
        f"take the fleet over with `hotspare fleet claim --takeover`",
        holder=marker,
    )


def _refusal(read_only: bool, sentence: str, holder: Marker | None = None) -> Decision:
    return Decision("warn" if read_only else "refuse", sentence, holder=holder)


def after_claim(identity: Identity, marker: Marker) -> Identity:
    """The identity once ``marker`` (its own claim) is written."""
    return replace(identity, fleet_id=marker.fleet_id, epoch=marker.epoch, lost_to=None)
