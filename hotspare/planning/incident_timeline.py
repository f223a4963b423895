"""An incident's timeline as the markdown artifact every incident run publishes (pure).

The Prefect UI keeps artifacts by key: ``incident-<id>`` gathers, run after run, what the
incident went through — detection, each page (and each provider that failed first), each
acknowledgement, notes, customer notices sent or held, status page updates, errors — so the
operator reads the incident where the runs are, not only with ``hotspare incident show``.
Input: the incident as ``inventory/incidents.get_incident`` returns it, and its notices.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Timeline kinds as the table names them; the order of the summary counts.
KIND_WORDS = {
    "detection": "detected",
    "page": "page",
    "acknowledgement": "acknowledged",
    "note": "note",
    "failover": "failover",
    "notice": "customer notice",
    "notice_held": "notice held",
    "status_publish": "status page",
    "error": "error",
    "approval": "approval",
}


def artifact_key(incident_id: int) -> str:
    """The artifact key of an incident (Prefect keys: lowercase letters, digits, dashes)."""
    return f"incident-{int(incident_id)}"


def _moment(iso: str | None, zone: bool = True) -> str:
    """``2026-12-06 16:23:08`` (+ `` UTC``) from an ISO time the inventory wrote in UTC."""
    if not iso:
        return "-"
    return iso[:19].replace("T", " ") + (" UTC" if zone else "")


def _cell(text: object, limit: int = 300) -> str:
    """One table cell: no pipe or line break can break the table."""
    flat = " ".join(str(text if text is not None else "-").split())
    flat = flat.replace("|", "/")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def timeline_markdown(incident: dict[str, Any], notices: Sequence[dict[str, Any]] = ()) -> str:
    """The incident's header, its counts (pages, acknowledgements, notices, errors) and its
    timeline as a table, oldest first; then its customer notices and their states."""
    events = incident.get("events", [])
    count = {kind: sum(1 for event in events if event["kind"] == kind) for kind in KIND_WORDS}
    where = ", ".join(incident.get("servers", []) + incident.get("services", [])) or "the fleet"
    status = incident["status"]
    if incident.get("acknowledged_by"):
        status += f" (acknowledged by {incident['acknowledged_by']})"
    lines = [
        f"# Incident {incident['id']}: {_cell(incident['title'], 200)}",
        "",
        (
            f"**{status}** · category {incident['category']} ({incident.get('category_name', '?')}), "
            f"{incident['severity']} severity · {_cell(where, 200)} · opened {_moment(incident.get('opened_at'))}"
            + (" · internal (customers not told)" if incident.get("internal") else "")
        ),
        "",
        (
            f"Pages {count['page']} · acknowledgements {count['acknowledgement']} · customer notices "
            f"{count['notice']} (held {count['notice_held']}) · errors {count['error']}"
        ),
        "",
        "| time (UTC) | what | who | detail |",
        "|---|---|---|---|",
    ]
    for event in events:
        at = _moment(event.get("at"), zone=False)
        lines.append(
            f"| {at} | {KIND_WORDS.get(event['kind'], event['kind'])} | {_cell(event.get('actor'), 60)} "
            f"| {_cell(event.get('text'))} |"
        )
    if not events:
        lines.append("| - | - | - | nothing recorded yet |")
    if notices:
        lines += ["", "## Customer notices", "", "| notice | state | subject | decision |", "|---|---|---|---|"]
        lines += [
            f"| {_cell(notice['kind'], 40)} | {_cell(notice['state'], 40)} | {_cell(notice['subject'], 120)} "
            f"| {_cell(notice['decision'])} |"
            for notice in notices
        ]
    return "\n".join(lines)
