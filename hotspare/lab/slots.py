"""Lab slots: which lab folder owns a slot, and finding one nobody uses.

A claim is a file in /run (gone after a reboot, like the namespaces it protects) naming the
lab folder that owns the slot; a lab refuses to take a live lab's slot or ports
(``LabSlotClaims``, a mixin of ``Lab``). A slot is free when it has no claim, no namespace of
its prefix and its DNS and SMTP ports are free (``free_slot``): tests and benchmarks that
build a lab of their own never touch the session lab (slot 1), the demo (slot 0) or any lab a
developer runs.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from hotspare.lab.errors import LabError
from hotspare.lab.probes import port_in_use
from hotspare.lab.processes import is_running, port_holder

CLAIMS_DIR = Path("/run/hotspare-lab")


def free_slot(avoid: tuple[int, ...] = (0, 1)) -> int:
    """A lab slot nobody uses right now, highest first; RuntimeError when all are taken."""
    from hotspare.lab.topology import MAX_SLOT, SlotLayout

    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
    for slot in range(MAX_SLOT, -1, -1):
        layout = SlotLayout(slot)
        if slot in avoid or Path(CLAIMS_DIR, f"slot-{slot}.json").exists() or f"{layout.prefix}-" in namespaces:
            continue
        from hotspare.lab.phone import acknowledgement_port, port_of
        from hotspare.lab.resolver import port_of as resolver_port
        from hotspare.lab.web import subscriptions_port

        if any(
            port_in_use(port)
            for port in (
                layout.dns_port,
                layout.smtp_port,
                port_of(slot),
                acknowledgement_port(slot),
                resolver_port(slot),
                subscriptions_port(slot),
            )
        ):
            continue
        return slot
    raise RuntimeError("no free lab slot on this machine")


class LabSlotClaims:
    """Claiming the lab's slot and refusing a live lab's (mixin of ``Lab``)."""

    def _claim_slot(self) -> None:
        """Record in /run that this folder's lab owns the slot (tmpfs: gone after reboot,
        like the namespaces it protects)."""
        CLAIMS_DIR.mkdir(exist_ok=True)
        self._claim_file.write_text(json.dumps({"directory": str(self.directory)}) + "\n")

    def _claim_owner(self) -> Path | None:
        try:
            return Path(json.loads(self._claim_file.read_text())["directory"])
        except (OSError, ValueError, KeyError):
            return None

    def _owns_claim(self) -> bool:
        return self._claim_owner() == self.directory

    def _slot_owner_elsewhere(self) -> Path | None:
        """Another folder whose lab is alive on our slot, or None."""
        owner = self._claim_owner()
        if owner is None or owner == self.directory:
            return None
        other = type(self)(owner, self.slot)
        return owner if any(is_running(d) for d in other._daemons()) else None

    def _check_slot_owner(self) -> None:
        """Refuse to take a slot from a live lab in another folder."""
        owner = self._slot_owner_elsewhere()
        if owner is not None:
            raise LabError(
                f"slot {self.slot} is used by the lab in {owner}; stop it with "
                f"`hotspare lab down --dir {owner}` or choose another --slot"
            )

    def _check_ports_free(self) -> None:
        """Refuse ports another program holds (a second named would start silently, a stale
        phone endpoint would take the new lab's calls), naming the holder when /proc shows it.

        Called after the slot's own leftovers were stopped (``stop_marked``), so what holds a
        port now is not this slot's lab. The status page server and the control site listen
        inside namespaces the lab has just created, where nothing else can hold a port."""
        from hotspare.lab.phone import acknowledgement_port, port_of
        from hotspare.lab.resolver import port_of as resolver_port

        for port, what in (
            (self.layout.dns_port, "DNS"),
            (self.layout.smtp_port, "SMTP"),
            (port_of(self.slot), "phone endpoint"),
            (acknowledgement_port(self.slot), "acknowledgement webhook"),
            (resolver_port(self.slot), "users' resolver"),
        ):
            if port_in_use(port):
                holder = port_holder(port)
                raise LabError(
                    f"{what} port 127.0.0.1:{port} of slot {self.slot} is already in use by "
                    f"{holder or 'another program (see `ss -lntup`)'}; stop it or choose another --slot"
                )


def _other_claims(slot: int) -> list[Path]:
    """Claim files of labs on other slots (they still need the covering blackhole)."""
    if not CLAIMS_DIR.is_dir():
        return []
    return [path for path in CLAIMS_DIR.glob("slot-*.json") if path.name != f"slot-{slot}.json"]
