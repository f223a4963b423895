"""How an age reads to an operator, in plans, tables and summaries: one formatter for all."""

from __future__ import annotations


def age_text(seconds: float | None, unknown: str = "?") -> str:
    """Seconds under two minutes, minutes under two hours, hours under two days, then days."""
    if seconds is None:
        return unknown
    if seconds < 120:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
