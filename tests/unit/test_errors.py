"""Errors by kind (hotspare/errors.py) and their exit codes (one table, hotspare/commands/errors.py):
each kind and its subclasses exit with the kind's code, an error the table does not know is
unexpected, and no runbook or task raises a bare RuntimeError the CLI would have to guess at."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pytest

from hotspare import errors
from hotspare.commands.errors import exit_code_of, message_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.BadConfiguration("2 problems in the fleet file"), 2),
        (errors.Refused("the source is empty"), 3),
        (errors.Busy("app1 is held by replicate:app1", service="app1", holder="replicate:app1"), 4),
        (errors.TransientError("prod-east did not answer"), 5),
        (errors.MissingConfiguration("no SSH block"), 6),
        (errors.NotApproved("rejected by april"), 7),
        (errors.NotFound("no service 'shop'"), 8),
        (errors.SeveralFailed("replication failed for app2; the others completed", ["app2"]), 9),
        (RuntimeError("something nobody classified"), 1),
    ],
)
def test_each_kind_has_its_exit_code(error, code):
    assert exit_code_of(error) == code


def test_the_projects_subclasses_take_their_kinds_code_without_a_line_of_their_own():
    from hotspare.fleet.load import FleetError
    from hotspare.inventory.locks import LeaseLost, ServiceBusy
    from hotspare.planning.approval import PlanRejected
    from hotspare.planning.shell_programs import PlanRefused
    from hotspare.planning.storage_accounts import GrantRefused

    assert exit_code_of(FleetError([])) == 2
    assert exit_code_of(PlanRefused(["the live path is /"])) == exit_code_of(GrantRefused("no backup section")) == 3
    assert exit_code_of(ServiceBusy("held", service="app1")) == exit_code_of(LeaseLost("taken over")) == 4
    assert exit_code_of(PlanRejected("rejected")) == 7


def test_old_import_places_name_the_same_classes():
    from hotspare.adapters import errors as adapter_errors
    from tasks.replication import Refused

    assert Refused is errors.Refused
    assert adapter_errors.Busy is errors.Busy and adapter_errors.HotspareError is errors.HotspareError
    assert issubclass(adapter_errors.DnsPrerequisiteFailed, errors.Refused)


def test_several_failed_names_the_services_keeps_them_through_pickling_and_reads_as_a_failed_run():
    error = errors.SeveralFailed("backup failed for app1, app2; the others completed", ["app1", "app2"])
    again = pickle.loads(pickle.dumps(error))  # Prefect pickles a failed run's exception
    assert (type(again), str(again), again.failed) == (errors.SeveralFailed, str(error), ("app1", "app2"))
    assert isinstance(again, RuntimeError)  # what these runbooks raised before: old callers still catch it
    assert message_for(again, "hotspare backup --all").startswith(
        "hotspare backup --all: failed: backup failed for app1, app2; the others completed"
    )


def test_no_runbook_or_task_raises_a_bare_runtime_error():
    """The CLI maps failures by class: a bare RuntimeError would exit 1, "unexpected"."""
    bare = []
    for folder in ("flows", "tasks", "hotspare"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.is_relative_to(ROOT / "hotspare" / "lab"):
                continue  # the lab is test equipment; its errors are its own (hotspare/lab/errors.py)
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (
                    isinstance(node, ast.Raise)
                    and isinstance(node.exc, ast.Call)
                    and getattr(node.exc.func, "id", None) == "RuntimeError"
                ):
                    bare.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not bare, f"raise a kind from hotspare/errors.py (SeveralFailed, Refused, ...) instead: {bare}"


def test_a_run_that_failed_on_a_worker_exits_with_the_kind_of_its_exception():
    from hotspare.commands.errors import RunFailed, exit_code_of, remote_kind

    # the state message Prefect writes for the flow's exception; the class is defined in a module the
    # flow imports (the deployment's entrypoint), not necessarily imported by the command yet
    refused = "Flow run encountered an exception: UnattendedRefused: unattended failover of app2 refused"
    assert remote_kind(refused, "flows/failover.py:failover").exit_code == 7
    assert remote_kind("Flow run encountered an exception: ServiceBusy: app1 is held", None).exit_code == 4
    assert remote_kind("Flow run encountered an exception: ValueError: bad", None) is None  # not one of ours
    assert remote_kind("Flow run was cancelled", None) is None
    assert exit_code_of(RunFailed("failover run ended FAILED", remote_kind(refused, None))) == 7
    assert exit_code_of(RunFailed("failover run ended FAILED")) == 9
