"""How the command line reports a failure: one exit code per kind, one message on stderr.

This module is the one place that maps exception classes to exit codes (docs/runbooks.md, "Exit
codes" table lists the same). The project's kinds are the base classes of hotspare/errors.py,
mapped by class: a subclass (ServiceBusy, RebuildRefused, PlanRefused...) gets its kind's code
without a line here. Other libraries' classes are looked up in ``sys.modules`` by name, never
imported here: an exception of a class whose module was never imported cannot have been
raised, and the CLI stays fast to start.
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
import traceback
from dataclasses import dataclass

from hotspare.errors import HotspareError


@dataclass(frozen=True)
class Kind:
    """One kind of failure: its exit code, a short label and what the operator can do."""

    exit_code: int
    label: str
    advice: str


OK = Kind(0, "ok", "")
UNEXPECTED = Kind(1, "unexpected error", "run with --debug for the traceback")
USAGE = Kind(2, "bad input", "see `{command} --help`")
BAD_FLEET = Kind(2, "bad fleet file", "fix these lines; `hotspare fleet check FILE` lists every problem")
REFUSED = Kind(
    3,
    "refused by a safety check",
    "nothing was changed; fix what the message names, or override where the command offers --force",
)
BUSY = Kind(4, "busy", "another run holds the service's lock (the message names it): let it finish, then run the command again")
UNREACHABLE = Kind(
    5,
    "unreachable",
    "check the host or server the message names (`hotspare status` probes every server), then run the command again",
)
MISSING_CONFIGURATION = Kind(
    6,
    "missing configuration",
    "set it up as the message says, then run the command again "
    "(`hotspare fleet check FILE --blocks` lists missing Prefect blocks)",
)
NOT_APPROVED = Kind(
    7,
    "not approved",
    "nothing was changed; the message says how to approve (the command's --dry-run "
    "shows the plan and its digest for --approve DIGEST), or answer the paused run "
    "in the Prefect UI",
)
NOT_FOUND = Kind(8, "not found", "check the name (`hotspare status` lists the services)")
INVENTORY_UNREACHABLE = Kind(
    10,
    "inventory unreachable",
    "start the inventory's database or restore the path to it (HOTSPARE_DB_URL names it), then "
    "run the command again; the next run then closes the records of runs the outage interrupted",
)
FAILED = Kind(9, "failed", "the run's record (Prefect UI, `hotspare status`) has each step; fix the cause and run again")
INTERRUPTED = Kind(130, "interrupted", "")

KINDS = (
    OK,
    UNEXPECTED,
    USAGE,
    BAD_FLEET,
    REFUSED,
    BUSY,
    UNREACHABLE,
    MISSING_CONFIGURATION,
    NOT_APPROVED,
    NOT_FOUND,
    FAILED,
    INVENTORY_UNREACHABLE,
)

# The map: (module, class name) -> kind. Order matters: the first class the error is an
# instance of wins, so subclasses come before their bases. The project's kinds are the classes
# of hotspare/errors.py, one line per kind: their subclasses need none.
EXCEPTION_KINDS: tuple[tuple[str, str, Kind], ...] = (
    ("hotspare.commands.errors", "UsageError", USAGE),
    ("hotspare.commands.errors", "RunFailed", FAILED),
    ("hotspare.errors", "BadConfiguration", BAD_FLEET),  # FleetError
    ("hotspare.errors", "NotApproved", NOT_APPROVED),  # PlanRejected
    ("prefect.exceptions", "FlowPauseTimeout", NOT_APPROVED),
    ("hotspare.errors", "Busy", BUSY),  # ServiceBusy, HostBusy, LeaseLost (a failover took the lock over)
    ("prefect.concurrency._asyncio", "AcquireConcurrencySlotTimeoutError", BUSY),
    ("hotspare.errors", "MissingConfiguration", MISSING_CONFIGURATION),
    ("hotspare.errors", "NotFound", NOT_FOUND),
    ("hotspare.errors", "Refused", REFUSED),  # RebuildRefused, PlanRefused, DrillRefused, DNS changed first
    ("hotspare.commands.deploy_commands", "NoWorkerOnline", REFUSED),
    ("hotspare.errors", "SeveralFailed", FAILED),  # a runbook over several services: some failed
    ("hotspare.inventory.db", "InventoryUnreachable", INVENTORY_UNREACHABLE),
    ("hotspare.errors", "TransientError", UNREACHABLE),
    ("httpx", "TransportError", UNREACHABLE),  # the Prefect API did not answer
    ("hotspare.errors", "HotspareError", FAILED),
)

# Prefect wrappers around a run's own exception: look at their cause instead.
_WRAPPER_NAMES = {"FailedRun", "CrashedRun", "UnfinishedRun", "MissingResult"}


class UsageError(HotspareError):
    """The command line asks for something impossible (e.g. a service and --all)."""


class RunFailed(HotspareError):
    """A runbook over several services ran and some failed; the log above names each reason.
    ``kind``: the kind of what a run on a worker failed with (``remote_kind``), when known."""

    def __init__(self, message: str, kind: Kind | None = None):
        super().__init__(message)
        self.kind = kind


# A run that failed on a worker is known here only by its state's message, which Prefect writes
# as "Flow run encountered an exception: ClassName: text".
_REMOTE_EXCEPTION = re.compile(r"encountered an exception: ([A-Za-z_]\w*)(?::|\(|$)")


def remote_kind(message: str | None, entrypoint: str | None) -> Kind | None:
    """The kind of the exception a run on a worker failed with, by its class name: the flow's
    module (the deployment's ``entrypoint``, "flows/failover.py:failover") is imported, so every
    class the flow can raise is known, and the project's kinds are searched for that name. None
    when the message names no class or the name is not one of the project's."""
    found = _REMOTE_EXCEPTION.search(message or "")
    if not found:
        return None
    if entrypoint:
        module = entrypoint.split(":", 1)[0].removesuffix(".py").replace("/", ".")
        try:
            importlib.import_module(module)
        except ImportError:
            pass  # a deployment of another checkout: the classes imported so far are all we know
    classes, seen = [HotspareError], []
    while classes:
        error_class = classes.pop()
        seen.append(error_class)
        classes.extend(error_class.__subclasses__())
    for error_class in seen:
        if error_class.__name__ == found.group(1):
            return kind_of(error_class.__new__(error_class))
    return None


def original(error: BaseException) -> BaseException:
    """The exception that caused ``error``: through Prefect's run wrappers, exception groups
    with one member, and explicit ``raise ... from`` chains that end in a classified error."""
    seen = set()
    while id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        elif (
            type(error).__name__ in _WRAPPER_NAMES
            and type(error).__module__.startswith("prefect")
            and (error.__cause__ or error.__context__)
        ):
            error = error.__cause__ or error.__context__
        elif kind_of(error) is UNEXPECTED and error.__cause__ is not None and kind_of(error.__cause__) is not UNEXPECTED:
            error = error.__cause__
        else:
            break
    return error


# The Prefect API refused our credentials: a configuration to fix, not a bug and not an outage.
_REFUSED_CREDENTIALS = {401: "Unauthorized", 403: "Forbidden"}


def _refused_credentials(error: BaseException) -> int | None:
    """The status code when ``error`` is the Prefect API's answer 401 or 403, else None."""
    if type(error).__name__ not in ("HTTPStatusError", "PrefectHTTPStatusError"):
        return None
    code = getattr(getattr(error, "response", None), "status_code", None)
    return code if code in _REFUSED_CREDENTIALS else None


def kind_of(error: BaseException) -> Kind:
    """The kind of failure ``error`` is; UNEXPECTED for classes the map does not name."""
    if isinstance(error, KeyboardInterrupt):
        return INTERRUPTED
    if _refused_credentials(error):
        return MISSING_CONFIGURATION
    if isinstance(error, RunFailed) and error.kind is not None:
        return error.kind
    for module_name, class_name, kind in EXCEPTION_KINDS:
        error_class = getattr(sys.modules.get(module_name), class_name, None)
        if isinstance(error_class, type) and isinstance(error, error_class):
            return kind
    return UNEXPECTED


def exit_code_of(error: BaseException) -> int:
    return kind_of(original(error)).exit_code


# Advice that fits the command, where the kind's own would point elsewhere: (kind, first word of
# the command) -> what to do. "{command}" is the command as the operator typed it.
COMMAND_ADVICE: dict[tuple[int, str], str] = {
    (8, "incident"): "check the number (`hotspare incident list` lists the incidents)",
    (8, "notice"): "check the incident's number (`hotspare incident list` lists them)",
    (8, "facility"): "check the name (`hotspare fleet check FILE` names the fleet's facilities)",
    (8, "run"): "check the flow's name; `hotspare deploy` creates the deployments",
    (8, "unlock"): "nothing was changed; `hotspare status` shows the services (the busy message names the holder)",
    (6, "fleet"): "create what the message names (`hotspare lab blocks` in the lab), then run `{command}` again",
}


def message_for(error: BaseException, where: str) -> str:
    """The one line for the operator: where, what went wrong, what to do, and the exit code."""
    cause = original(error)
    kind = kind_of(cause)
    text = str(cause).strip() or type(cause).__name__
    refused = _refused_credentials(cause)
    advice = getattr(cause, "advice", None)  # an error may know better than its kind (what was undone)
    if refused:
        text = (
            f"the Prefect API at {_request_url(cause)} refused this command's credentials ({refused} "
            f"{_REFUSED_CREDENTIALS[refused]})"
        )
        advice = advice or (
            "set PREFECT_API_AUTH_STRING to the server's string (`. scripts/setup.sh` reads "
            "$HOTSPARE_HOME/prefect-api-auth), or PREFECT_API_KEY for Prefect Cloud, then run the command again"
        )
    elif type(cause).__module__.startswith("httpx"):
        text = f"the Prefect API at {_request_url(cause)} did not answer ({text}); start it or set PREFECT_API_URL"
    if kind is UNEXPECTED:
        text = f"{type(cause).__name__}: {text}"
    headline = f"{where}: {kind.label}: {text}" if where else f"{kind.label}: {text}"
    command = " ".join(where.split()[:2]) if where else "hotspare"
    words = where.split()
    advice = advice or COMMAND_ADVICE.get((kind.exit_code, words[1] if len(words) > 1 else ""), kind.advice)
    advice = advice.replace("{command}", command)
    return f"{headline} — {advice} (exit {kind.exit_code})" if advice else headline


def _request_url(error: BaseException) -> str:
    try:
        return str(error.request.url)
    except (AttributeError, RuntimeError):  # httpx raises RuntimeError when no request is attached
        return "PREFECT_API_URL"


def report(error: BaseException, where: str, debug: bool) -> int:
    """Print ``error`` on stderr for the operator (with its traceback under --debug) and
    return the exit code of its kind."""
    if debug:
        traceback.print_exception(error, file=sys.stderr)
    from hotspare.commands.terminal import safe

    print(safe(message_for(error, where)), file=sys.stderr)
    return exit_code_of(error)


class _WithoutTraceback(logging.Formatter):
    """Formats a record as its handler's formatter would, minus the traceback."""

    def __init__(self, inner: logging.Formatter | None):
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def hide_console_tracebacks() -> None:
    """Keep tracebacks that Prefect logs for a failed run out of the terminal.

    Prefect logs every failed flow and task run with its traceback to the console; the CLI
    prints one message instead. Only terminal handlers change: the run logs sent to the
    Prefect API keep their tracebacks. ``--debug`` leaves everything as it is.
    """
    loggers = [logging.getLogger()] + [
        item for item in logging.root.manager.loggerDict.values() if isinstance(item, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if type(handler).__name__ in ("PrefectConsoleHandler", "StreamHandler", "_SafeStreamHandler") and not isinstance(
                handler.formatter, _WithoutTraceback
            ):
                handler.setFormatter(_WithoutTraceback(handler.formatter))
