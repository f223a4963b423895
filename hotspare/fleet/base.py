"""Types every part of the fleet schema shares: names, paths, commands and the strict base model.

Kept apart from ``schema.py`` so that sections of the fleet file that live in modules of their
own (health checks, incidents, facilities, workers) can import them without a cycle.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator

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

    @field_validator("*")
    @classmethod
    def _durations_fit(cls, value: Any, info: ValidationInfo) -> Any:
        """A duration (a field named ``*_seconds``, ``*_minutes``, ``*_hours``, ``*_days``) of at
        most ten years: longer ones overflow the timers and dates that use them."""
        name = info.field_name or ""
        factor = next((factor for suffix, factor in DURATION_UNITS.items() if name.endswith(suffix)), None)
        if factor and isinstance(value, int | float) and not isinstance(value, bool) and value * factor > MAX_DURATION_SECONDS:
            raise ValueError(f"{value:g} is longer than ten years: write a real duration")
        return value


DURATION_UNITS = {"_seconds": 1, "_minutes": 60, "_hours": 3600, "_days": 86400}
MAX_DURATION_SECONDS = 10 * 366 * 86400
