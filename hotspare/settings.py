"""Where hotspare keeps its local files. Everything is overridable by environment variables so
that several processes or machines can share a configuration."""

from __future__ import annotations

import os
from pathlib import Path


def hotspare_home() -> Path:
    """``$HOTSPARE_HOME``, default ``~/.hotspare``: inventory database, lab, run files."""
    return Path(os.environ.get("HOTSPARE_HOME") or Path.home() / ".hotspare").absolute()


def ssh_issuer() -> tuple[str, str] | None:
    """(URL, token) of the control site's SSH certificate issuer, or None to log in with the
    credentials block's key (the control site's own). Set on facility workers:
    ``HOTSPARE_SSH_ISSUER_URL`` and ``HOTSPARE_SSH_ISSUER_TOKEN`` (the site's token, in the
    environment like the Prefect auth string; docs/trust-model.md)."""
    url = os.environ.get("HOTSPARE_SSH_ISSUER_URL", "").strip()
    if not url:
        return None
    token = os.environ.get("HOTSPARE_SSH_ISSUER_TOKEN", "").strip()
    if not token:
        from hotspare.adapters.errors import MissingConfiguration

        raise MissingConfiguration(
            "HOTSPARE_SSH_ISSUER_URL is set but HOTSPARE_SSH_ISSUER_TOKEN is not: give this "
            "site's issuer token (from the control site's issuer configuration)"
        )
    return url, token
