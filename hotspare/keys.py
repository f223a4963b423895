"""Key material made in-process: ed25519 key pairs in OpenSSH format.

``cryptography`` ships with paramiko, so a key pair costs well under a millisecond instead of an
``ssh-keygen`` run. Used for the per-run transfer keys and the lab's own keys.
"""

from __future__ import annotations


def generate_ed25519(comment: str) -> tuple[str, str]:
    """A new ed25519 key pair: (OpenSSH private key text, 'ssh-ed25519 AAAA... comment')."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return private, f"{public} {comment}"
