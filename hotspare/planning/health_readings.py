"""From raw probe results to ``Reading``s: reachability, application, DNS answer, certificate,
disk space and freshness. Pure (the caller passes ``now``), so every threshold is unit-tested.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hotspare.planning.ages import age_text
from hotspare.planning.readings import ComponentKind, ComponentState, Reading

OK, DEGRADED, FAILED, UNKNOWN = ComponentState.ok, ComponentState.degraded, ComponentState.failed, ComponentState.unknown
REACHABILITY = "reachability:ssh"
APPLICATION_DIRECT = "application:direct"
APPLICATION_DNS = "application:dns"
DNS_ANSWER = "dns:answer"
CERTIFICATE = "certificate:tls"
FRESHNESS_COPY = "freshness:copy"


@dataclass(frozen=True)
class SpaceThresholds:
    disk_warning: float = 85
    disk_failed: float = 95
    inode_warning: float = 85
    inode_failed: float = 95


def probe_reading(subject: str, component: str, kind: ComponentKind, result: dict[str, Any] | None, site: str) -> Reading:
    """A probe's ``{"ok": bool, "evidence": str}`` (None: not probed) as a reading."""
    if result is None:
        return Reading(subject, component, kind, UNKNOWN, "not probed", site)
    return Reading(subject, component, kind, OK if result.get("ok") else FAILED, str(result.get("evidence", "")), site)


def dns_answer_reading(
    service: str, dns_name: str, addresses: list[str] | None, error: str | None, expected_address: str, expected_server: str
) -> Reading:
    """The authoritative answer: ok when it names the active server, degraded when it names
    another address (a change under way, or a stale record), failed when there is none."""
    subject = f"service:{service}"
    if error:
        return Reading(subject, DNS_ANSWER, ComponentKind.dns, FAILED, f"{dns_name}: {error}")
    if not addresses:
        return Reading(subject, DNS_ANSWER, ComponentKind.dns, FAILED, f"{dns_name} has no A record")
    if expected_address in addresses:
        return Reading(subject, DNS_ANSWER, ComponentKind.dns, OK, f"{dns_name} -> {', '.join(addresses)} ({expected_server})")
    return Reading(
        subject,
        DNS_ANSWER,
        ComponentKind.dns,
        DEGRADED,
        f"{dns_name} -> {', '.join(addresses)}, but {service} runs on {expected_server} ({expected_address})",
    )


def certificate_reading(service: str, not_after: datetime | None, error: str | None, now: datetime, warning_days: int) -> Reading:
    """Expired or unreadable: failed; expiring within ``warning_days``: degraded."""
    subject = f"service:{service}"
    if error or not_after is None:
        return Reading(subject, CERTIFICATE, ComponentKind.certificate, FAILED, f"TLS certificate not readable: {error}")
    days = (not_after - now).total_seconds() / 86400
    if days <= 0:
        return Reading(
            subject, CERTIFICATE, ComponentKind.certificate, FAILED, f"TLS certificate expired {not_after:%Y-%m-%d %H:%M} UTC"
        )
    state = DEGRADED if days < warning_days else OK
    return Reading(
        subject,
        CERTIFICATE,
        ComponentKind.certificate,
        state,
        f"TLS certificate expires {not_after:%Y-%m-%d} ({days:.1f} days; warning below {warning_days})",
    )


def space_readings(server: str, blocks_text: str, inodes_text: str, thresholds: SpaceThresholds) -> list[Reading]:
    """``df -P`` and ``df -P -i`` output as one reading per mount point (disk and inodes)."""
    used_blocks, used_inodes = _df_percentages(blocks_text), _df_percentages(inodes_text)
    readings = []
    for mount in sorted(set(used_blocks) | set(used_inodes)):
        disk, inodes = used_blocks.get(mount), used_inodes.get(mount)
        state = OK
        for value, warning, failed in (
            (disk, thresholds.disk_warning, thresholds.disk_failed),
            (inodes, thresholds.inode_warning, thresholds.inode_failed),
        ):
            if value is None:
                continue
            if value >= failed:
                state = FAILED
            elif value >= warning and state == OK:
                state = DEGRADED
        evidence = f"{mount}: disk {_percent(disk)} used, inodes {_percent(inodes)} used"
        readings.append(Reading(server, f"space:{mount}", ComponentKind.space, state, evidence))
    return readings


def _df_percentages(text: str) -> dict[str, float]:
    """{mount point: used percent} from POSIX df output ('-' counts as unknown)."""
    used = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 6 and fields[4].endswith("%") and fields[4][:-1].isdigit():
            used[fields[5]] = float(fields[4][:-1])
    return used


def _percent(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f} %"


def freshness_reading(service: str, copy_started: datetime | None, now: datetime, rpo_hours: float) -> Reading:
    """The newest verified copy against the RPO: degraded beyond 75 % of it or past it.

    Never ``failed``: a late copy leaves the service serving its users, and ``failed`` is what
    incidents page on as an outage; the evidence says whether the RPO is violated."""
    subject = f"service:{service}"
    if copy_started is None:
        return Reading(
            subject, FRESHNESS_COPY, ComponentKind.freshness, DEGRADED, f"no verified copy: RPO of {rpo_hours:g} h violated"
        )
    age = (now - copy_started).total_seconds()
    if age > rpo_hours * 3600:
        state, verdict = DEGRADED, "RPO violated"
    elif age > rpo_hours * 3600 * 0.75:
        state, verdict = DEGRADED, "RPO at risk"
    else:
        state, verdict = OK, "within RPO"
    return Reading(
        subject,
        FRESHNESS_COPY,
        ComponentKind.freshness,
        state,
        f"newest verified copy is {age_text(age)} old ({verdict}, RPO {rpo_hours:g} h)",
    )
