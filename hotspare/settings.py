"""Where hotspare keeps its local files. Everything is overridable by environment variables so
that several processes or machines can share a configuration."""

from __future__ import annotations

import os
from pathlib import Path


def hotspare_home() -> Path:
    """``$HOTSPARE_HOME``, default ``~/.hotspare``: inventory database, lab, run files."""
    return Path(os.environ.get("HOTSPARE_HOME") or Path.home() / ".hotspare").absolute()
