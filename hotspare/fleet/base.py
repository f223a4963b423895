"""Types every part of the fleet schema shares: names, paths, commands and the strict base model.

Kept apart from ``schema.py`` so that sections of the fleet file that live in modules of their
own (health checks, incidents, facilities, workers) can import them without a cycle.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]
# A path on the servers. Its form (absolute, normal) and safety (no system tree, no hotspare
# folder, no other service's path) are plan rules (``paths.py``, ``rules.py``), so a wrong path
# is reported together with every other problem of its service.
AbsolutePath = Annotated[str, StringConstraints(min_length=1)]
Command = Annotated[list[str], Field(min_length=1)]
Pattern = Annotated[str, StringConstraints(pattern=r'^[^\s"\\]+$')]


class Strict(BaseModel):
    """Base for fleet models: unknown keys are errors and instances are immutable; no number is
    infinite or NaN (``.inf`` seconds would pass ``gt=0`` and then break every timer that uses it)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
