"""Key material for the lab: ed25519 keys in OpenSSH format, the TSIG secret."""

from __future__ import annotations

import re

from hotspare.lab.errors import LabError


def generate_ed25519(comment: str) -> tuple[str, str]:
    """A new ed25519 key pair: (OpenSSH private key text, 'ssh-ed25519 AAAA... comment').

    Made in-process (cryptography ships with paramiko): nine keys cost milliseconds
    instead of nine ssh-keygen runs.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return private, f"{public} {comment}"


def tsig_secret(key_text: str) -> str:
    """The base64 secret inside `tsig-keygen` output."""
    match = re.search(r'secret\s+"([^"]+)"', key_text)
    if match is None:
        raise LabError(f"tsig-keygen printed no secret: {key_text!r}")
    return match.group(1)
