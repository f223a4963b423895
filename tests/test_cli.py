"""The command line as an operator meets it in an incident: one message on stderr saying what
is wrong, where and what to do, no traceback (unless --debug), and one exit code per kind of
failure (docs/runbooks.md, "Exit codes"). Real runs against the lab; every test leaves the lab as found.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from test_failover import SERVICE, address, dns_answer, protected  # noqa: F401 - protected is a fixture

from hotspare.cli import main
from hotspare.commands import errors
from hotspare.commands.topology import _age, format_topology, topology_rows
from hotspare.inventory import copies
from hotspare.inventory.models import CopyRow, ServerRow, ServiceRow

from lab_helpers import host_path

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


def hotspare(*words: str, timeout: float = 300, **environment_changes: str) -> subprocess.CompletedProcess:
    """``hotspare WORDS`` in its own process, against this session's Prefect API and inventory
    (``environment_changes`` on top: ``COLUMNS="100"``)."""
    from prefect.settings import PREFECT_API_URL

    environment = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), **environment_changes}
    return subprocess.run(
        [sys.executable, "-m", "hotspare.cli", *words],
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_one_message(stderr: str, *expected: str) -> None:
    """The operator's message is there and no traceback is."""
    assert "Traceback" not in stderr, stderr
    for text in expected:
        assert text in stderr, stderr


# ---------------------------------------------------------------------------------------
# Without the lab


def test_bad_fleet_file_exits_2_naming_file_and_line(tmp_path, capsys):
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text("version: 1\nfacilities: []\nservers: []\nsevices: []\n")
    assert main(["fleet", "check", str(fleet_file)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_message(captured.err, f"{fleet_file}:4: sevices: unknown field")
    assert captured.err.startswith("hotspare fleet check: bad fleet file:")


def test_every_kind_has_its_own_exit_code_and_the_map_names_real_classes():
    codes = [kind.exit_code for kind in errors.KINDS if kind is not errors.BAD_FLEET]
    assert len(codes) == len(set(codes))
    import importlib

    for module_name, class_name, _kind in errors.EXCEPTION_KINDS:
        module = importlib.import_module(module_name)
        assert isinstance(getattr(module, class_name), type), (module_name, class_name)


def test_wrapped_errors_are_unwrapped_to_their_cause():
    from prefect.exceptions import FailedRun

    from hotspare.adapters.errors import Busy, TransientError

    busy = Busy("service app1 is busy", service="app1", holder="replicate:1234", since=NOW)
    try:
        raise FailedRun("run failed") from busy
    except FailedRun as wrapped:
        assert errors.exit_code_of(wrapped) == 4
    assert errors.exit_code_of(BaseExceptionGroup("one", [TransientError("SSH to prod-east timed out")])) == 5
    assert errors.exit_code_of(ZeroDivisionError("oops")) == 1
    assert "run with --debug" in errors.message_for(ZeroDivisionError("oops"), "hotspare replicate app1")


def test_debug_shows_the_traceback(tmp_path, capsys):
    missing = tmp_path / "nowhere.yaml"
    assert main(["--debug", "fleet", "check", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "FleetError" in err
    assert f"{missing}:0: (top): cannot read" in err


# ---------------------------------------------------------------------------------------
# The topology table (pure)


def _server(name: str, facility: str, address: str, state: str = "ok") -> ServerRow:
    return ServerRow(
        name=name, facility=facility, address=address, host_key="k", planned_role="x", ssh_user_block="b", state=state
    )


def _copy(copy_id: str, target: str, hours_old: float, status: str = "verified") -> CopyRow:
    return CopyRow(
        id=copy_id,
        service="app1",
        source_server="prod-east",
        target_server=target,
        path="/p",
        started_at=NOW - timedelta(hours=hours_old),
        status=status,
    )


SERVERS = {
    "prod-east": _server("prod-east", "east", "10.0.0.11"),
    "mirror-west": _server("mirror-west", "west", "10.0.0.12"),
    "standby-west": _server("standby-west", "west", "10.0.0.13"),
}


def test_topology_of_a_protected_service_marks_where_users_go():
    service = ServiceRow(
        name="app1",
        spec={"dns_name": "app1.lab.test", "zone": "lab.test"},
        planned_production="prod-east",
        planned_mirror="mirror-west",
        active_server="prod-east",
        mirror_server="mirror-west",
        current_copy_id="app1-b",
    )
    copies = [
        _copy("app1-a", "mirror-west", 13),
        _copy("app1-b", "mirror-west", 1.5),
        _copy("app1-c", "mirror-west", 0.2, "failed"),
    ]
    rows = topology_rows(service, SERVERS, copies, ["10.0.0.11"], NOW)
    assert [(row["role"], row["server"], row["facility"], row["dns"]) for row in rows] == [
        ("production", "prod-east", "east", "users"),
        ("mirror", "mirror-west", "west", ""),
    ]
    assert (rows[1]["copy"], rows[1]["copy_status"], rows[1]["copy_age_hours"]) == ("app1-b", "verified", 1.5)
    assert rows[0]["copy"] is None
    text = format_topology(service, rows, ["10.0.0.11"], width=100)
    assert text.splitlines()[0] == "app1: protected; app1.lab.test -> 10.0.0.11"
    assert _row(text, "production") == ["prod-east", "east", "10.0.0.11", "ok", "-", "-", "users"]
    assert _row(text, "mirror")[4:6] == ["app1-b (verified)", "90 min"]
    assert max(len(line) for line in text.splitlines()) <= 100
    assert [_age(hours) for hours in (None, 0.01, 0.75, 1.5, 49)] == ["-", "36 s", "45 min", "90 min", "2 d 1 h"]


def test_topology_after_an_emergency_failover_shows_the_live_copy_and_the_old_production():
    service = ServiceRow(
        name="app1",
        spec={"dns_name": "app1.lab.test", "zone": "lab.test"},
        planned_production="prod-east",
        planned_mirror="mirror-west",
        active_server="mirror-west",
        mirror_server=None,
        state="failed-over",
        failover={"copy_id": "app1-a", "source": "prod-east", "target": "mirror-west"},
        current_copy_id="app1-a",
    )
    servers = dict(SERVERS, **{"prod-east": _server("prod-east", "east", "10.0.0.11", "needs-reprotect")})
    rows = topology_rows(service, servers, [_copy("app1-a", "mirror-west", 3)], None, NOW)
    assert [(row["role"], row["server"], row["state"], row["copy"], row["dns"]) for row in rows] == [
        ("production", "mirror-west", "ok", "app1-a", None),
        ("none (planned production)", "prod-east", "needs-reprotect", None, None),
    ]
    text = format_topology(service, rows, None, "DNS server 127.0.0.1:5397 did not answer within 2 s")
    assert (
        text.splitlines()[0] == "app1: failed-over; app1.lab.test not read (DNS server 127.0.0.1:5397 did not answer within 2 s)"
    )


# ---------------------------------------------------------------------------------------
# Against the lab


def test_unknown_service_exits_8_and_names_the_known_ones(fleet, capsys):
    assert main(["replicate", "no-such-app"]) == 8
    err = capsys.readouterr().err
    assert_one_message(err, "hotspare replicate no-such-app: not found: no service 'no-such-app'", "app1")


def test_refused_replication_exits_3_without_traceback(fleet, lab_env):
    data = host_path(lab_env, lab_env["services"][SERVICE]["production"], lab_env["services"][SERVICE]["data_path"])
    parked = data.with_name("data.parked-by-cli-test")
    data.rename(parked)
    data.mkdir()
    try:
        completed = hotspare("replicate", SERVICE)
        debugged = hotspare("replicate", SERVICE, "--debug")
    finally:
        data.rmdir()
        parked.rename(data)
    assert completed.returncode == 3, completed.stderr
    assert_one_message(completed.stderr, f"hotspare replicate {SERVICE}: refused by a safety check:", "no files", "(exit 3)")
    print(completed.stderr)
    assert debugged.returncode == 3
    assert "Traceback (most recent call last)" in debugged.stderr and "Refused" in debugged.stderr


def test_busy_service_exits_4_naming_the_holder_who_can_be_unlocked(fleet, capsys):
    from hotspare.inventory import locks

    lease = locks.acquire(SERVICE, "backup:held-by-cli-test")
    try:
        code = main(["replicate", SERVICE])
        err = capsys.readouterr().err
        assert code == 4, err
        assert_one_message(err, f"hotspare replicate {SERVICE}: busy:", "backup:held-by-cli-test", "(exit 4)")
        # the command the message offers clears exactly that holder's lock, once
        assert main(["unlock", SERVICE, "--holder", "backup:held-by-cli-test"]) == 7  # no terminal, no --yes
        assert main(["unlock", SERVICE, "--holder", "backup:held-by-cli-test", "--yes"]) == 0
        assert locks.holder_of(SERVICE) is None
        assert main(["unlock", SERVICE, "--holder", "backup:held-by-cli-test", "--yes"]) == 8
        assert_one_message(capsys.readouterr().err, "does not hold the lock of app1 (nobody holds it)")
    finally:
        locks.release(lease)


def test_missing_prefect_block_exits_6(fleet, lab, capsys):
    from blocks.credentials import SshCredentials
    from hotspare import access

    block = access.loaded_fleet().defaults.ssh_user_block
    SshCredentials.delete(block)
    access.forget_credentials()
    access.close_connections()
    try:
        code = main(["replicate", SERVICE])
    finally:
        lab.register_blocks()
        access.forget_credentials()
    err = capsys.readouterr().err
    assert code == 6, err
    assert_one_message(err, "missing configuration:", f"Prefect block {block!r}", "(exit 6)")


def test_unreachable_production_exits_5(fleet, lab):
    from hotspare import access

    lab.fail("prod-east")
    try:
        completed = hotspare("replicate", SERVICE)
    finally:
        lab.heal("prod-east")
        access.close_connections()
    assert completed.returncode == 5, completed.stderr
    assert_one_message(completed.stderr, f"hotspare replicate {SERVICE}: unreachable:", "prod-east", "(exit 5)")
    print(completed.stderr)


def test_failover_without_approval_exits_7_and_changes_nothing(protected, lab_env, capsys):  # noqa: F811
    assert main(["failover", SERVICE]) == 7  # no terminal to ask on, no --yes
    captured = capsys.readouterr()
    assert "Plan digest:" in captured.out
    assert_one_message(captured.err, f"hotspare failover {SERVICE}: not approved:", "(exit 7)")
    assert dns_answer(lab_env) == [address(lab_env, "production")]


def test_planned_switchover_prints_the_topology_before_and_after(protected, lab_env, capsys, monkeypatch):  # noqa: F811
    monkeypatch.setenv("COLUMNS", "200")  # wide enough that no cell wraps: one line per row to read
    assert main(["failover", SERVICE, "--planned", "--yes"]) == 0
    out = capsys.readouterr().out
    before, after = out.split("before:\n", 1)[1], out.split("after:\n", 1)[1]
    dns_name = lab_env["services"][SERVICE]["dns_name"]
    production, mirror = address(lab_env, "production"), address(lab_env, "mirror")
    assert before.startswith(f"{SERVICE}: protected; {dns_name} -> {production}")
    assert after.startswith(f"{SERVICE}: protected; {dns_name} -> {mirror}")
    assert _row(before, "production")[:2] == ["prod-east", "east"] and _row(before, "production")[-1] == "users"
    assert _row(after, "production")[:2] == ["mirror-west", "west"] and _row(after, "production")[-1] == "users"
    assert _row(after, "mirror")[0] == "prod-east" and "(verified)" in _row(after, "mirror")[4]
    assert dns_answer(lab_env) == [mirror]


def _row(table: str, role: str) -> list[str]:
    """The cells after ROLE of the first table row for ``role`` (cells are at least two spaces apart)."""
    import re

    for line in table.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells and cells[0] == role:
            return cells[1:]
    raise AssertionError(f"no {role} row in:\n{table}")


def test_refused_reprotect_shows_the_unchanged_topology_around_its_message(protected, capsys):  # noqa: F811
    assert main(["reprotect", SERVICE]) == 3
    captured = capsys.readouterr()
    assert "before:\napp1: protected;" in captured.out and "after:\napp1: protected;" in captured.out
    assert_one_message(captured.err, f"hotspare reprotect {SERVICE}: refused by a safety check: {SERVICE} is protected")


def test_reprotect_and_failback_have_the_failover_gate(protected, lab, lab_env, capsys):  # noqa: F811
    """--dry-run shows the plan and its digest and changes nothing; no terminal and no approval
    exits 7 with advice naming this very command; --approve DIGEST runs exactly that plan."""
    import re

    lab.fail("prod-east")
    try:
        assert main(["failover", SERVICE, "--yes"]) == 0
    finally:
        lab.heal("prod-east")
    from lab_helpers import ssh

    assert ssh(lab_env, "prod-east", "/srv/app1/app/ctl", "stop").returncode == 0  # the old production, fenced by hand
    for command, heading in (
        (["reprotect", SERVICE], "# Reprotect plan for app1"),
        (["failback", SERVICE], "# Failover plan for app1 (planned)"),
    ):
        capsys.readouterr()
        assert main([*command, "--dry-run"]) == 0
        shown = capsys.readouterr().out
        assert heading in shown, shown
        digest = re.search(r"Plan digest: `([0-9a-f]+)`", shown).group(1)
        assert main(command) == 7  # no terminal to type the digest on
        err = capsys.readouterr().err
        assert f"`hotspare {' '.join(command)} --approve {digest}`" in err and "type its digest" not in err
        assert main([*command, "--approve", "0" * 16]) == 7  # another plan's digest
        assert main([*command, "--approve", digest]) == 0
        if command[0] == "reprotect":
            row = copies.service_row(SERVICE)
            assert (row.state, row.active_server, row.mirror_server) == ("protected", "mirror-west", "prod-east")
            assert (
                main(["failback", SERVICE, "--approve", "0" * 16]) == 7
                and copies.service_row(SERVICE).active_server == "mirror-west"
            )  # nothing moved on a wrong digest
    row = copies.service_row(SERVICE)
    assert (row.state, row.active_server, row.mirror_server) == ("protected", "prod-east", "mirror-west")
    assert dns_answer(lab_env) == [address(lab_env, "production")]


def test_a_runbook_over_several_services_that_failed_exits_9(prefect_api):
    from prefect import flow

    from hotspare.commands.running import run_flow
    from hotspare.errors import SeveralFailed

    @flow(name="cli-test-several")
    def several_services_one_failed():
        raise SeveralFailed("replication failed for app2; the others completed", ["app2"])

    with pytest.raises(SeveralFailed) as raised:
        run_flow(several_services_one_failed, debug=False, several=True)
    assert errors.exit_code_of(raised.value) == 9
    assert errors.message_for(raised.value, "hotspare replicate --all").startswith(
        "hotspare replicate --all: failed: replication failed for app2; the others completed"
    )


# ---------------------------------------------------------------------------------------
# One convention: --json everywhere, ages, help, usage, imports (no lab)


# Commands that change something and print one sentence saying what, or run until stopped:
# nothing for a script to read beyond the exit code.
ACTING_ONLY = {
    "serve": "runs until stopped",
    "incident webhook": "runs until stopped",
    "unlock": "one sentence",
    "status-page subscriptions": "runs until stopped",
    "incident open": "one sentence",
    "incident ack": "one sentence",
    "incident note": "one sentence",
    "incident resolve": "one sentence",
    "incident publish": "one sentence",
    "incident automations": "one sentence each",
    "notice automations": "one sentence each",
    "automations apply": "one sentence each",
    "fleet sample": "writes the sample file itself",
    "fleet claim": "one sentence",
}


def leaf_commands(parser, words: tuple[str, ...] = ()):
    """(words, parser) of every command that runs, walking every level of subcommands."""
    import argparse

    groups = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not groups:
        yield words, parser
        return
    for name, child in groups[0].choices.items():
        yield from leaf_commands(child, (*words, name))


def test_every_reporting_command_has_json():
    from hotspare.cli import build_parser

    leaves = dict(leaf_commands(build_parser()))
    without = sorted(
        " ".join(words)
        for words, parser in leaves.items()
        if "--json" not in parser._option_string_actions and " ".join(words) not in ACTING_ONLY and words[0] != "lab"
    )
    assert without == [], f"commands that report without --json: {without}"
    for name in (
        "failover",
        "incident show",
        "notice preview",
        "deploy",
        "replicate",
        "backup",
        "run",
        "status",
        "health",
        "readiness",
        "incident list",
        "hardware",
        "rebuild",
        "facility failover",
    ):
        assert "--json" in leaves[tuple(name.split())]._option_string_actions, name
    assert len(leaves) > 40  # the walk reached the nested commands


def test_one_age_rule_everywhere():
    from hotspare.planning.ages import age_text, ago_text, moment_text

    assert [age_text(seconds) for seconds in (0, 72, 119.4, 180, 3600, 7500, 86400, 3 * 86400 + 4 * 3600)] == [
        "0 s",
        "72 s",
        "119 s",
        "3 min",
        "60 min",
        "2 h 5 min",
        "24 h",
        "3 d 4 h",
    ]
    assert age_text(None) == "?" and age_text(-5) == "0 s"
    assert ago_text(NOW - timedelta(minutes=3), NOW) == "3 min ago"
    assert moment_text(datetime(2025, 3, 1, 12, 0)) == "2025-03-01 12:00 UTC"  # naive: UTC, as stored
    assert moment_text("2025-03-01T12:00:05+00:00", seconds=True) == "2025-03-01 12:00:05 UTC"


def test_the_status_table_fits_the_width_and_folds_instead_of_cutting():
    from hotspare.status import STATUS_HEADERS, format_table, status_rows

    record = {
        "service": "shop",
        "state": "protected",
        "protection": "protected",
        "copy_age_hours": 1.5,
        "copy_backend": "btrfs-snapshot",
        "rpo_state": "ok",
        "backup_age_hours": 26.0,
        "restore_proof": {"outcome": "passed", "at": NOW - timedelta(days=3), "duration_s": 12},
        "production": {"name": "east-1", "facility": "east", "reachable": True},
        "mirror": {"name": "west-1", "facility": "west", "reachable": False},
        "last_failover": {"at": NOW, "outcome": "ok", "rto_seconds": 42.4, "data_loss_seconds": 3600.0},
        "health_text": "psu PS2 failed: " + "the power supply reports no input voltage " * 3,
    }
    bare = {
        "service": "blog",
        "state": "unprotected",
        "production": {"name": "east-2", "facility": "east"},
        "mirror": None,
        "last_failover": {"at": NOW, "outcome": "failed"},
    }
    shop, blog = status_rows([record, bare], NOW)
    assert shop[:7] == (
        "shop",
        "protected",
        "east-1 (east) up",
        "west-1 (west) NO ANSWER",
        "90 min old, snapshots; RPO ok",
        "26 h old; proof passed 3 d ago",
        "RTO 42 s, loss 60 min",
    )
    assert blog[2:7] == ("east-2 (east) ?", "-", "no verified copy", "-", "failed 2025-03-01 12:00 UTC")
    text = format_table([record, bare], width=100, now=NOW)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert all(header.split()[0] in text for header in STATUS_HEADERS) and len(STATUS_HEADERS) == 8
    words = " ".join(text.split())
    assert "no input voltage" in words  # wrapped between words, never cut


def test_health_findings_wrap_long_evidence_between_words(capsys, monkeypatch):
    from hotspare.commands.health_commands import print_findings

    monkeypatch.setenv("COLUMNS", "100")
    evidence = (
        "ssh to 10.211.76.11:22 timed out after 5.0 s from control, west; the host answered no ping either; "
        "last good answer 72 s ago; the BMC reports chassis power on"
    )
    print_findings(
        {
            "rounds": 3,
            "sites": {"control": None, "east": "cannot reach standby-east", "west": None},
            "components": [
                {
                    "subject": "prod-east",
                    "component": "reachability:ssh",
                    "state": "failed",
                    "sites": ["control", "west"],
                    "evidence": evidence,
                }
            ],
            "changes": [{"subject": "prod-east", "component": "reachability:ssh", "previous": "ok", "state": "failed"}],
            "failovers": [],
        }
    )
    shown = capsys.readouterr().out
    assert max(len(line) for line in shown.splitlines()) <= 100, shown
    # the last column: its continuation lines hold only its words, so the whole evidence reads on,
    # wrapped between words (no word cut, nothing left out)
    assert evidence in " ".join(shown.split())
    assert "changed: prod-east reachability:ssh ok -> failed" in shown


def test_help_is_grouped_and_has_a_version(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    headings = [line for line in shown.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert headings[:5] == ["protect:", "recover:", "watch:", "tell:", "admin:"]
    assert shown.index("  replicate ") < shown.index("recover:") < shown.index("  failover ") < shown.index("watch:")
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.startswith("hotspare ")


def test_a_mistyped_command_says_did_you_mean_and_a_wrong_flag_shows_the_commands_own_usage(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["replicat", "app1"])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert err.splitlines()[0] == (
        "hotspare: bad input: unknown command 'replicat'; did you mean `hotspare replicate`? "
        "`hotspare --help` lists them (exit 2)"
    )
    with pytest.raises(SystemExit) as exited:
        main(["failover", "app1", "--frobnicate"])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    first, usage = err.splitlines()[0], err.splitlines()[1]
    assert first == "hotspare failover: bad input: unrecognized arguments: --frobnicate (exit 2)"
    assert usage.startswith("usage: hotspare failover ")
    with pytest.raises(SystemExit):
        main(["incident", "shwo", "3"])
    assert "did you mean `hotspare incident show`?" in capsys.readouterr().err


def test_usage_errors_advise_the_command_they_came_from(capsys):
    assert main(["backup"]) == 2  # neither a service nor --all
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    assert err.startswith("hotspare backup: bad input: name one SERVICE or pass --all — see `hotspare backup --help` (exit 2)")


def imported_by(*words: str) -> set[str]:
    """The modules ``hotspare WORDS`` imports, read from sys.modules in a process of its own."""
    program = (
        "import contextlib, io, sys\nfrom hotspare.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n        main(sys.argv[1:])\n    except SystemExit:\n        pass\n"
        "print('\\n'.join(sorted(sys.modules)), file=sys.stderr)"
    )
    completed = subprocess.run([sys.executable, "-c", program, *words], capture_output=True, text=True, timeout=120, check=False)
    modules = set(completed.stderr.split())
    assert "hotspare.cli" in modules, completed.stderr
    return modules


HEAVY = ("prefect", "sqlmodel", "sqlalchemy", "hotspare.lab", "hotspare.inventory", "tasks", "flows", "paramiko", "rich")


def test_help_and_fleet_check_import_no_prefect_orm_or_lab_code():
    fleet_file = os.path.join(os.path.dirname(__file__), "data", "fleet-basic.yaml")
    for words in (("--help",), ("fleet", "check", fleet_file), ("status", "--help")):
        loaded = imported_by(*words)
        heavy = sorted(name for name in loaded if any(name == root or name.startswith(root + ".") for root in HEAVY))
        assert heavy == [], (words, heavy)


def test_a_replication_from_the_command_line_prints_its_result_and_leaves_its_whole_log(fleet, lab_env):
    """The command's process ends without the interpreter's teardown (``cli._end_process``):
    its result is on stdout, its exit code is the command's, and the flow run's last log line
    and its final state reached the Prefect API before the process was gone."""
    import json

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from sqlmodel import select

    from hotspare.inventory.db import session
    from hotspare.inventory.models import RunRow

    from lab_helpers import wait_for

    completed = hotspare("replicate", SERVICE, "--json")
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["outcome"] == "ok"
    with session() as db:
        run = db.exec(select(RunRow).where(RunRow.kind == "replicate").order_by(RunRow.id.desc()).limit(1)).one()  # type: ignore[union-attr]
    assert run.outcome == "ok" and run.flow_run_id
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(run.flow_run_id).state.is_completed()

        def last_line():
            found = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.flow_run_id])))
            return [log.message for log in found if "Finished in state Completed" in log.message]

        wait_for("the flow run's last log line in the API", last_line, seconds=30)


def test_everyday_commands_fit_100_columns(fleet, lab_env):
    """status, health, readiness, incident list and hardware at COLUMNS=100, on the lab, with an
    incident whose long title must wrap: no line wider than 100, no traceback."""
    from hotspare.inventory import incidents

    title = "checkout slow for some customers after the storage controller firmware update " * 2
    opened = incidents.open_incident(3, "low", title.strip(), ["app2"], [], None, title, actor="cli test", internal=True)
    try:
        for words in (("status", "--timeout", "1"), ("health",), ("readiness",), ("incident", "list"), ("hardware", "--all")):
            completed = hotspare(*words, COLUMNS="100")
            assert completed.returncode in (0, 9), (words, completed.stderr)  # 9: a failed component, not ready
            lines = completed.stdout.splitlines()
            assert lines and max(len(line) for line in lines) <= 100, (words, completed.stdout)
            assert "Traceback" not in completed.stderr
            print(f"$ COLUMNS=100 hotspare {' '.join(words)}\n{completed.stdout}")
            if words[0] == "incident":
                assert "firmware" in completed.stdout and "UTC" in completed.stdout  # wrapped, with its zone
    finally:
        incidents.resolve(opened.incident_id, "cli test", "test over")


def test_a_refused_prefect_login_is_a_configuration_error(fleet, lab_env):
    completed = hotspare("fleet", "check", lab_env["fleet_file"], "--blocks", PREFECT_API_AUTH_STRING="hotspare:wrong")
    assert completed.returncode == 6, completed.stderr
    assert completed.stderr.count("\n") == 1, completed.stderr  # one line
    assert_one_message(
        completed.stderr,
        "hotspare fleet check: missing configuration: the Prefect API at",
        "refused this command's credentials (401 Unauthorized)",
        "PREFECT_API_AUTH_STRING",
        "(exit 6)",
    )
