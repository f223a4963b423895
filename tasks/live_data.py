"""Hostile data never goes live: run the live-data program (``planning/live_data.py``) on a host
and say what it did, item by item, in the run log.

``neutralise`` is the one call every activation makes (failover, failback, reprotect, rebuild)
over an open connection; ``neutralise_live_data`` is the same as a task of its own for a runbook
that has no connection open (the drill: its bubble's workspace, or ``act=False`` for a
report-only look at a copy).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from hotspare import access
from hotspare.adapters.errors import PermanentError
from hotspare.planning import live_data as plan

# Long enough for a walk over millions of files; the program is one pass.
PROGRAM_TIMEOUT = 3 * 3600


def run_tag() -> str:
    """Names one activation's kept-aside folder (``plan.backup_folder``)."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def neutralise(
    connection,
    spec,
    roots: Sequence[tuple[str, str]],
    *,
    kept: Sequence[tuple[str, str]] = (),
    act: bool = True,
    within: Sequence[str] = (),
    kept_out_by_rsync: frozenset[str] | None = None,
    logger=None,
) -> plan.Report:
    """Scan ``roots`` ((folder, live path it is or becomes[, act])) on the connection's host,
    neutralise what the service's ``allow_special`` does not allow, list the files of ``kept``
    that differ; every item is a line of the run log (warnings for what was neutralised or kept
    aside). ``kept_out_by_rsync``: the kinds rsync's own options kept out of the live paths,
    named from read-only copy roots (``plan.left_out``)."""
    logger = logger or get_run_logger()
    spec = spec if isinstance(spec, dict) else spec.model_dump(mode="json")
    stdin = plan.neutralise_stdin(roots, plan.declared_paths(spec), spec.get("allow_special") or [], kept, act)
    ran = connection.run(plan.neutralise_argv(within), stdin=stdin, timeout=PROGRAM_TIMEOUT, check=False)
    if ran.exit_status != 0:
        raise PermanentError(
            f"the live-data check on {connection.endpoint.name} failed (exit {ran.exit_status}): "
            f"{plan.printable(ran.stderr_tail.strip()[-300:])}; nothing was made live past this point"
        )
    report = plan.parse_report(ran.stdout.decode())
    host = connection.endpoint.name
    if kept_out_by_rsync is not None:  # read-only copy roots were scanned to name what rsync kept out
        report = plan.left_out(report, kept_out_by_rsync)
    for finding in report.findings:
        (logger.info if finding.action == "allowed" else logger.warning)("%s on %s: %s", spec["name"], host, finding.sentence())
    for error in report.errors:
        logger.warning("%s on %s: could not scan %s", spec["name"], host, plan.printable(error))
    for kept_file in report.kept:
        logger.warning("%s on %s: replaced by the copy, kept aside: %s", spec["name"], host, kept_file.line())
    if report.kept_count > len(report.kept):
        logger.warning(
            "%s on %s: … and %d more replaced file(s) kept aside", spec["name"], host, report.kept_count - len(report.kept)
        )
    logger.info("%s on %s: %s", spec["name"], host, report.summary())
    return report


@task(name="neutralise live data", cache_policy=NO_CACHE)
def neutralise_live_data(
    service: str, host: str, roots: list[tuple[str, str]], act: bool = True, within: list[str] | None = None
) -> dict:
    """The live-data program on ``host`` for ``service`` (see ``neutralise``); the report as a dict
    with ``markdown`` lines for the caller's artifact. ``within``: an argv prefix that enters
    other namespaces first (a drill: ``planning.drill.enter(holder, "mount")``, with ``roots``
    as the bubble sees them)."""
    fleet = access.loaded_fleet()
    with access.connect(fleet, host) as connection:
        report = neutralise(connection, fleet.service(service), roots, act=act, within=within or ())
    return report.as_dict() | {"markdown": report.markdown()}
