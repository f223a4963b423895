"""The continuity plan's tables: fleet settings and the escalation chains, as rows people read.

Pure (no network, no clock). Two kinds:

- ``escalation_tables``: per incident category, the pages the paging flow sends, computed by the
  very functions it calls (``fleet.incident_schema.chain_for`` then
  ``planning.escalation.plan_escalation``, as in ``flows/incident.py``), never a second reading
  of the fleet file: the plan on paper is the chain the system walks.
- ``settings_tables``: any other fleet section as a table of settings and values, and a table
  per list of records (its fields as columns); missing values read "not set", booleans "yes" or
  "no", lists as comma-separated words. No raw YAML reaches the document.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hotspare.planning.ages import age_text
from hotspare.planning.escalation import plan_escalation

CATEGORIES = {1: "a server", 2: "programming", 3: "a customer's problem"}
ACTION_WORDS = {"call": "call", "sms": "text message", "email": "e-mail"}


@dataclass(frozen=True)
class Table:
    """A titled table: column headers and rows of cell texts."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""


def escalation_tables(fleet: Any) -> list[Table]:
    """One table per incident category (1 to 3): every page in order, over every round."""
    from hotspare.fleet.incident_schema import chain_for

    tables = []
    for category, what in CATEGORIES.items():
        chain = chain_for(fleet.incidents, category, list(fleet.escalation))
        title = f"Category {category} ({what})"
        if chain is None:
            tables.append(
                Table(
                    title,
                    ("round", "step", "action", "who", "number or address", "extension", "then wait"),
                    (),
                    note="Nobody is paged: no chain for this category and no escalation list.",
                )
            )
            continue
        plan = escalation_rows(chain, fleet.contacts)
        night = "paged" if chain.page_low_severity_in_quiet_hours else "not paged"
        quiet = fleet.incidents.quiet_hours
        note = (
            f"{chain.rounds} round(s); an acknowledgement stops the chain. Low-severity incidents are {night} "
            f"between {quiet.start} and {quiet.end} ({quiet.timezone})."
        )
        if plan.note:
            note += " " + "; ".join(plan.note.split("\n")) + "."
        tables.append(Table(title, plan.columns, plan.rows, note))
    return tables


def escalation_rows(chain: Any, contacts: Any) -> Table:
    """The rows of one chain: (round, step, action, who, number or address, extension, wait)."""
    plan = plan_escalation(chain, contacts)
    rows = tuple(
        (
            str(page.round),
            str(page.step),
            ACTION_WORDS.get(page.action, page.action),
            page.target,
            page.address,
            page.digits or "none",
            age_text(page.wait_seconds),
        )
        for page in plan.pages
    )
    return Table(
        "", ("round", "step", "action", "who", "number or address", "extension", "then wait"), rows, "\n".join(plan.skipped)
    )


def settings_tables(title: str, value: Any) -> list[Table]:
    """``value`` (a dumped fleet section) as a settings table plus one table per list of records."""
    settings: list[tuple[str, str]] = []
    records: list[Table] = []
    _walk(title, "", value, settings, records)
    tables = [Table(title, ("setting", "value"), tuple(settings))] if settings else []
    return tables + records


def _walk(title: str, prefix: str, value: Any, settings: list[tuple[str, str]], records: list[Table]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _walk(title, f"{prefix}{_words(key)}" if not prefix else f"{prefix}: {_words(key)}", item, settings, records)
        return
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        columns: list[str] = []
        for item in value:
            columns += [key for key in item if key not in columns]
        rows = tuple(tuple(cell(item.get(key)) for key in columns) for item in value)
        records.append(Table(f"{title}: {prefix}", tuple(_words(key) for key in columns), rows))
        return
    settings.append((prefix or title, cell(value)))


def cell(value: Any) -> str:
    """A value as a reader reads it."""
    if value is None or value == "":
        return "not set"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        return "; ".join(_record(item) for item in value)  # "Ana Acme (ana@acme.test); …"
    if isinstance(value, list):
        return ", ".join(cell(item) for item in value) if value else "none"
    if isinstance(value, dict):
        return "; ".join(f"{_words(key)}: {cell(item)}" for key, item in value.items()) or "none"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _record(item: dict[str, Any]) -> str:
    """A record inside a cell: its first value, the others in parentheses."""
    values = [cell(value) for value in item.values() if value not in (None, "", [], {})]
    return f"{values[0]} ({', '.join(values[1:])})" if len(values) > 1 else (values[0] if values else "none")


def _words(key: str) -> str:
    return str(key).replace("_", " ")
