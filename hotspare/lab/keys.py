"""Key material for the lab: ed25519 keys in OpenSSH format, the TSIG secret."""

from __future__ import annotations

import re

from hotspare.keys import generate_ed25519  # noqa: F401  (the lab makes its keys the same way)
from hotspare.lab.errors import LabError


def tsig_secret(key_text: str) -> str:
    """The base64 secret inside `tsig-keygen` output."""
    match = re.search(r'secret\s+"([^"]+)"', key_text)
    if match is None:
        raise LabError(f"tsig-keygen printed no secret: {key_text!r}")
    return match.group(1)
