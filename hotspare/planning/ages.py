"""How an age or a duration reads to an operator, in plans, tables and summaries: one rule for all.

"72 s", "3 min", "2 h 5 min", "3 d 4 h": seconds under two minutes, minutes under two hours,
hours and minutes under two days, then days and hours. Never a decimal of an hour ("0.0h"):
a reader compares these at a glance, and "0.1 h" hides whether it means 6 min or 9.
"""

from __future__ import annotations

from datetime import datetime, timezone


def age_text(seconds: float | None, unknown: str = "?") -> str:
    """``seconds`` as the one age/duration rule says it (see the module docstring)."""
    if seconds is None:
        return unknown
    seconds = max(float(seconds), 0.0)
    if round(seconds) < 120:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 48 * 60:
        hours, rest = divmod(minutes, 60)
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    hours = round(seconds / 3600)
    days, rest = divmod(hours, 24)
    return f"{days} d {rest} h" if rest else f"{days} d"


def hours_text(hours: float | None, unknown: str = "?") -> str:
    """An age kept in hours (copy and backup ages in the inventory), by the same rule."""
    return age_text(hours * 3600 if hours is not None else None, unknown)


def ago_text(moment: datetime | None, now: datetime, unknown: str = "never") -> str:
    """ "3 min ago" for a moment before ``now`` (naive moments are UTC, as the inventory stores them)."""
    if moment is None:
        return unknown
    moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    now = now if now.tzinfo else now.replace(tzinfo=timezone.utc)
    return f"{age_text((now - moment).total_seconds())} ago"


def moment_text(moment: datetime | str | None, unknown: str = "-", seconds: bool = False) -> str:
    """A time with its zone, to the minute: "2026-12-06 15:27 UTC" (naive moments are UTC);
    ``seconds``: "2026-12-06 15:27:04 UTC", for timelines."""
    if moment is None or moment == "":
        return unknown
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment)
        except ValueError:
            return str(moment)
    assert isinstance(moment, datetime)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    shown = f"{moment:%Y-%m-%d %H:%M:%S}" if seconds else f"{moment:%Y-%m-%d %H:%M}"
    return f"{shown} {moment.tzname() or moment.strftime('%z')}"
