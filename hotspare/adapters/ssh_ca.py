"""OpenSSH's certificate authority, driven through ``ssh-keygen``: sign a run's public key.

The thin signer of the control site's issuer (``hotspare/issuer``): the decision (principals,
source addresses, validity, forced command) is made by ``planning/certificates.py``; this module
only turns it into ``ssh-keygen -s CA ...`` and reads the certificate back. OpenSSH's own tool
signs, so the certificate is exactly what sshd checks (principals, ``source-address``,
``force-command``, validity, and no permission beyond those: ``-O clear`` drops pty, port, agent
and X11 forwarding and user rc).

The public key must be an ed25519 key on one line (checked by parsing it); it is written to a
0700 temporary folder, never placed in argv.
"""

from __future__ import annotations

import base64
import secrets
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hotspare.adapters.errors import PermanentError, TransientError

SSH_KEYGEN = "ssh-keygen"
SIGN_SECONDS = 10.0
KEY_TYPE = "ssh-ed25519"
CERTIFICATE_TYPE = "ssh-ed25519-cert-v01@openssh.com"


class BadPublicKey(PermanentError):
    """The public key to sign is not one ed25519 public key line."""


@dataclass(frozen=True)
class Signing:
    """What to sign: the decision of ``planning/certificates.py`` in ssh-keygen's terms."""

    key_id: str
    principals: tuple[str, ...]
    validity: str  # ssh-keygen -V, e.g. "-1m:+10m" or "20200101:20200102"
    source_addresses: tuple[str, ...] = ()
    force_command: str | None = None


def checked_public_key(text: str) -> str:
    """``ssh-ed25519 BASE64`` from one public key line (a comment is dropped), or BadPublicKey."""
    parts = text.strip().split()
    if "\n" in text.strip() or len(parts) < 2 or parts[0] != KEY_TYPE:
        raise BadPublicKey("the public key must be one line 'ssh-ed25519 BASE64' (an ed25519 key made for this run)")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError:
        raise BadPublicKey("the public key's base64 does not decode") from None
    # the wire form: string "ssh-ed25519", string of 32 key bytes
    if len(blob) != 4 + len(KEY_TYPE) + 4 + 32 or blob[4 : 4 + len(KEY_TYPE)] != KEY_TYPE.encode():
        raise BadPublicKey("the public key is not an ed25519 key")
    return f"{KEY_TYPE} {parts[1]}"


def sign_argv(ca_key: Path, signing: Signing, serial: int, public_key_path: Path) -> list[str]:
    """The ssh-keygen command that signs ``public_key_path`` (pure: also for the tests)."""
    argv = [
        SSH_KEYGEN,
        "-q",
        "-s",
        str(ca_key),
        "-I",
        signing.key_id,
        "-n",
        ",".join(signing.principals),
        "-V",
        signing.validity,
        "-z",
        str(serial),
        "-O",
        "clear",
    ]
    if signing.source_addresses:
        argv += ["-O", "source-address=" + ",".join(signing.source_addresses)]
    if signing.force_command:
        argv += ["-O", "force-command=" + signing.force_command]
    return argv + [str(public_key_path)]


def sign(ca_key: Path, public_key: str, signing: Signing, timeout: float = SIGN_SECONDS) -> str:
    """The certificate line (``ssh-ed25519-cert-v01@openssh.com ...``) for ``public_key``."""
    if not signing.principals:
        raise PermanentError(f"refusing to sign {signing.key_id} without principals (it would open every host)")
    line = checked_public_key(public_key)
    serial = secrets.randbits(63)
    with tempfile.TemporaryDirectory(prefix="hotspare-sign-") as folder:  # made 0700
        public_path = Path(folder) / "run.pub"
        public_path.write_text(line + "\n")
        try:
            result = subprocess.run(
                sign_argv(ca_key, signing, serial, public_path),
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise TransientError(f"ssh-keygen did not sign {signing.key_id} within {timeout:g} s") from None
        except FileNotFoundError:
            raise PermanentError("ssh-keygen is not installed on the control site (Debian: openssh-client)") from None
        if result.returncode != 0:
            raise PermanentError(f"ssh-keygen refused to sign {signing.key_id}: {result.stderr.strip()[-500:]}")
        certificate = (Path(folder) / "run-cert.pub").read_text().strip()
    if not certificate.startswith(CERTIFICATE_TYPE + " "):
        raise PermanentError(f"ssh-keygen wrote no ed25519 certificate for {signing.key_id}")
    return certificate
