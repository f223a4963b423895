"""Finding a lab slot nobody uses, for tests and benchmarks that build a lab of their own.

A slot is in use when it has a claim file, any namespace of its prefix, or its DNS or SMTP
port taken. The session lab (slot 1), the demo (slot 0) and any lab a developer runs must
never be touched by a test that crashes or squats a lab on purpose.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def free_slot(avoid: tuple[int, ...] = (0, 1)) -> int:
    """A lab slot nobody uses right now, highest first; RuntimeError when all are taken."""
    from hotspare.lab.lab import CLAIMS_DIR
    from hotspare.lab.probes import port_in_use
    from hotspare.lab.topology import MAX_SLOT, SlotLayout

    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
    for slot in range(MAX_SLOT, -1, -1):
        layout = SlotLayout(slot)
        if slot in avoid or Path(CLAIMS_DIR, f"slot-{slot}.json").exists() or f"{layout.prefix}-" in namespaces:
            continue
        if port_in_use(layout.dns_port) or port_in_use(layout.smtp_port):
            continue
        return slot
    raise RuntimeError("no free lab slot on this machine")
