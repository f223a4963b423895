"""Failover, reprotect and failback against the real lab: sshd hosts, BIND with TSIG, the apps.

Every test ends with the service back in its original layout (production on prod-east,
protected by mirror-west), so tests can run in any order.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlmodel import select

from flows.failover import failover
from flows.replicate import replicate_service
from flows.reprotect import reprotect
from hotspare.adapters import dns
from hotspare.inventory import copies
from hotspare.inventory.db import session
from hotspare.inventory.models import RunRow
from hotspare.planning.failover import plan_failover
from hotspare.probes import http_get_via_dns

from lab_helpers import host_path, kill_failover_after_activation, paused_flow_run, poll, ssh
from lab_layout import restore_starting_layout

SERVICE = "app1"


def lab_dns(lab_env: dict) -> dns.AuthoritativeServer:
    return dns.AuthoritativeServer(lab_env["zone"], lab_env["dns"]["address"], lab_env["dns"]["port"])


def dns_answer(lab_env: dict) -> list[str]:
    return dns.read_addresses(lab_dns(lab_env), lab_env["services"][SERVICE]["dns_name"])


def through_dns(lab_env: dict, path: str) -> tuple[int, bytes, str]:
    """What users get for ``path``: the name resolved by the lab's authoritative DNS."""
    service = lab_env["services"][SERVICE]
    url = f"http://{service['dns_name']}:{service['app_port']}/{path}"
    return http_get_via_dns(url, lambda name: dns.read_addresses(lab_dns(lab_env), name))


def address(lab_env: dict, role: str) -> str:
    return lab_env["hosts"][lab_env["services"][SERVICE][role]]["address"]


def write_on_production(lab_env: dict, name: str, text: str) -> None:
    service = lab_env["services"][SERVICE]
    (host_path(lab_env, service["production"], service["data_path"]) / name).write_text(text)


def reset_layout(lab, lab_env) -> None:
    """Put app1 back on prod-east -> mirror-west, protected, the quick way (tests/lab_layout.py):
    the full way back (reprotect, then a planned failback) is itself under test below."""
    restore_starting_layout(lab, lab_env, (SERVICE,))


@pytest.fixture
def protected(fleet, lab, lab_env):
    """app1 in its original layout with a verified copy, before and after the test."""
    reset_layout(lab, lab_env)
    if copies.newest_verified(SERVICE, "mirror-west") is None:
        assert replicate_service(SERVICE)["outcome"] == "ok"
    yield
    reset_layout(lab, lab_env)


def test_emergency_failover_serves_the_last_verified_copy(protected, lab, lab_env, capsys):
    write_on_production(lab_env, "in-copy.txt", "replicated before the outage")
    replicate_service(SERVICE)
    write_on_production(lab_env, "after-copy.txt", "written after the last copy")
    lab.fail("prod-east")

    state = failover(SERVICE, yes=True, return_state=True)
    result = state.result()

    assert result["outcome"] == "ok" and result["fencing"]["method"] == "powered off"  # through its BMC
    fence_step = poll(lambda: task_state(state.state_details.flow_run_id, "fence production"), 30, "the fence step")
    assert fence_step.type.value == "COMPLETED" and state.is_completed()  # fenced: a green step
    assert dns_answer(lab_env) == [address(lab_env, "mirror")]
    status, body, used = through_dns(lab_env, "in-copy.txt")
    assert (status, body, used) == (200, b"replicated before the outage", address(lab_env, "mirror"))
    assert through_dns(lab_env, "after-copy.txt")[0] == 404  # the data-loss window, as planned
    # the service's accounts, locked on the mirror while production served, log in as on production now
    assert _password_of(lab_env, "mirror-west", "app1-web") == _password_of(lab_env, "prod-east", "app1-web")
    assert not _password_of(lab_env, "mirror-west", "app1-web").startswith(("!", "*"))
    row = copies.service_row(SERVICE)
    assert (row.state, row.active_server, row.mirror_server) == ("failed-over", "mirror-west", None)
    assert row.failover["copy_id"] == result["copy_id"]

    # Running it again changes nothing and says so.
    assert failover(SERVICE, yes=True)["outcome"] == "already-done"

    # hotspare status shows the measured RTO and the data-loss window
    import json

    from hotspare.cli import main

    capsys.readouterr()
    assert main(["status", "--json", "--timeout", "1"]) == 0
    record = next(r for r in json.loads(capsys.readouterr().out)["services"] if r["service"] == SERVICE)
    last = record["last_failover"]
    assert last["outcome"] == "ok" and last["mode"] == "emergency" and last["fenced"] is True
    assert last["rto_seconds"] == result["rto_seconds"] > 0
    assert last["data_loss_seconds"] == pytest.approx(result["data_loss_seconds"]) and last["data_loss_seconds"] > 0


def test_reprotect_refuses_split_brain_then_failback_restores_layout(protected, lab, lab_env):
    lab.fail("east")  # with its management network: no BMC to power it off, an unfenced failover
    failover(SERVICE, yes=True)
    lab.heal("east")  # it comes back still running the app: two productions
    state = reprotect(SERVICE, return_state=True)
    assert state.is_failed() and "split brain" in state.message
    assert copies.service_row(SERVICE).state == "failed-over"

    mirror_data = host_path(lab_env, "mirror-west", lab_env["services"][SERVICE]["data_path"])
    (mirror_data / "written-on-mirror.txt").write_text("while failed over")
    assert ssh(lab_env, "prod-east", "/srv/app1/app/ctl", "stop").returncode == 0
    result = reprotect(SERVICE, yes=True)
    assert (result["production"], result["mirror"]) == ("mirror-west", "prod-east")

    back = failover(SERVICE, planned=True, yes=True)
    assert back["outcome"] == "ok" and back["reprotect"]["outcome"] == "ok"
    row = copies.service_row(SERVICE)
    assert (row.state, row.active_server, row.mirror_server) == ("protected", "prod-east", "mirror-west")
    assert through_dns(lab_env, "written-on-mirror.txt")[:3:2] == (200, address(lab_env, "production"))
    assert copies.current_copy(SERVICE).status == "verified"


def test_planned_switchover_loses_no_write(protected, lab, lab_env):
    write_on_production(lab_env, "last-write.txt", "written just before the switchover")
    result = failover(SERVICE, planned=True, yes=True)
    assert result["outcome"] == "ok" and result["mode"] == "planned"
    assert through_dns(lab_env, "last-write.txt") == (200, b"written just before the switchover", address(lab_env, "mirror"))
    # the old production was stopped cleanly and became the mirror
    row = copies.service_row(SERVICE)
    assert (row.state, row.active_server, row.mirror_server) == ("protected", "mirror-west", "prod-east")


def task_state(flow_run_id, name: str):
    """The final state of the flow run's task run called ``name`` (None until it is recorded)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterName

    with get_client(sync_client=True) as client:
        found = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_=name)),
        )
    return next((run.state for run in found if run.state and run.state.is_final()), None)


def latest_artifact(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        [artifact] = client.read_latest_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return str(artifact.data)


def test_two_concurrent_failovers_exactly_one_wins(protected, lab, lab_env):
    lab.fail("prod-east")
    with ThreadPoolExecutor(2) as pool:
        states = list(pool.map(lambda _: failover(SERVICE, yes=True, return_state=True), range(2)))
    outcomes = sorted("ok" if s.is_completed() and s.result()["outcome"] == "ok" else "lost" for s in states)
    assert outcomes == ["lost", "ok"], [s.message for s in states]
    loser = next(s for s in states if not (s.is_completed() and s.result()["outcome"] == "ok"))
    # met the winner's lock or slot, or (a failover takes about a second now) started after it ended
    said = str(loser.message) + (str(loser.result().get("detail")) if loser.is_completed() else "")
    assert any(word in said for word in ("busy", "already runs", "record", "concurrency")), said
    assert dns_answer(lab_env) == [address(lab_env, "mirror")]


def test_old_copy_is_refused_unless_forced_and_nothing_changes(protected, lab, lab_env):
    state = failover(SERVICE, yes=True, max_copy_age_hours=0.00001, return_state=True)
    assert state.is_failed() and "beyond the" in state.message
    assert dns_answer(lab_env) == [address(lab_env, "production")]
    assert copies.service_row(SERVICE).state == "protected"
    assert through_dns(lab_env, "health.txt")[0] == 200


def test_approval_timeout_changes_nothing(protected, lab, lab_env):
    before = copies.service_row(SERVICE)
    state = failover(SERVICE, approval_timeout_seconds=2, return_state=True)
    assert state.is_failed()
    after = copies.service_row(SERVICE)
    assert (after.state, after.active_server, after.mirror_server) == (before.state, before.active_server, before.mirror_server)
    assert dns_answer(lab_env) == [address(lab_env, "production")]
    assert through_dns(lab_env, "health.txt")[:3:2] == (200, address(lab_env, "production"))


def test_a_pre_approved_failover_that_starts_after_its_deadline_is_cancelled(protected, lab, lab_env):
    from datetime import timedelta

    from hotspare.inventory.models import utcnow

    state = failover(SERVICE, yes=True, approval_expires_at=utcnow() - timedelta(minutes=1), return_state=True)
    assert state.is_cancelled() and "Cancelled before any step; nothing was changed" in state.message
    assert dns_answer(lab_env) == [address(lab_env, "production")]
    assert copies.service_row(SERVICE).state == "protected"
    assert through_dns(lab_env, "health.txt")[:3:2] == (200, address(lab_env, "production"))


def test_a_record_moved_during_a_switchover_is_reported_with_what_was_done_and_undone(protected, lab, lab_env):
    """Someone moves the record while the switchover runs its final sync: the compare-and-swap
    refuses, and the message says the copy went live and was stopped again, never "nothing
    was changed"."""
    from hotspare import access
    from hotspare.commands.errors import message_for

    production, elsewhere = address(lab_env, "production"), lab_env["hosts"]["standby-east"]["address"]
    zone = access.loaded_fleet().zone(lab_env["zone"])

    def move_the_record_once_production_stops() -> None:
        poll(lambda: not _answers(lab_env, production), 120, "the app to stop on production for the final sync")
        dns.compare_and_swap_address(
            lab_dns(lab_env),
            access.tsig_key(zone.tsig_key_block),
            lab_env["services"][SERVICE]["dns_name"],
            production,
            elsewhere,
            zone.ttl,
        )

    with ThreadPoolExecutor(1) as pool:
        mover = pool.submit(move_the_record_once_production_stops)
        state = failover(SERVICE, planned=True, yes=True, return_state=True)
        mover.result(timeout=30)
    assert state.is_failed()
    message = message_for(_failure_of(state), "hotspare failover app1")
    assert "refused by a safety check" in message and "nothing was changed" not in message.lower()
    assert "the app was stopped on prod-east for the final sync (and started again there)" in message
    assert "was made live on mirror-west and its app started" in message and "the app on mirror-west was stopped again" in message
    assert "This run did not change DNS" in message and "(exit 3)" in message
    assert dns_answer(lab_env) == [elsewhere]  # as the other change left it
    assert copies.service_row(SERVICE).state == "protected"
    assert _answers(lab_env, production) and not _answers(lab_env, address(lab_env, "mirror"))  # one production


def _password_of(lab_env: dict, host: str, user: str) -> str:
    shadow = host_path(lab_env, host, "/etc/shadow").read_text().splitlines()
    return next(line for line in shadow if line.startswith(f"{user}:")).split(":")[1]


def _answers(lab_env: dict, where: str) -> bool:
    try:
        return through_dns_at(lab_env, where)[0] == 200
    except OSError:
        return False


def _failure_of(state) -> BaseException:
    try:
        state.result()
    except BaseException as error:  # the run's own exception, as the CLI receives it
        return error
    raise AssertionError("the run did not fail")


def test_approval_bound_to_another_plan_is_refused(protected, lab, lab_env):
    state = failover(SERVICE, approved_plan_digest="000000000000", return_state=True)
    assert state.is_failed() and "Review the new plan and approve its digest; nothing was changed" in state.message
    assert dns_answer(lab_env) == [address(lab_env, "production")]


def test_killed_after_activation_then_resumed_converges(protected, lab, lab_env, prefect_api):
    lab.fail("prod-east")
    activated = kill_failover_after_activation(lab_env, SERVICE, "mirror-west", 90)
    assert copies.service_row(SERVICE).state == "failing-over"

    result = failover(SERVICE, yes=True, resume=True)
    assert result["outcome"] == "ok"
    # the RTO counts the outage from the killed run's start, not the resume's few steps
    assert result["rto_seconds"] >= time.monotonic() - activated > result["this_run_seconds"]
    with session() as db:
        run = db.exec(
            select(RunRow).where(RunRow.kind == "failover", RunRow.service == SERVICE).order_by(RunRow.id.desc())
        ).first()
    assert run.outcome == "ok" and "since the failover began at" in run.summary and "resumed; this run" in run.summary
    row = copies.service_row(SERVICE)
    assert (row.state, row.active_server) == ("failed-over", "mirror-west")
    assert dns_answer(lab_env) == [address(lab_env, "mirror")]
    assert through_dns(lab_env, "health.txt")[:3:2] == (200, address(lab_env, "mirror"))


def test_a_killed_failback_names_the_resume_that_finishes_it(protected, lab, lab_env, prefect_api, capsys):
    from prefect.settings import PREFECT_API_URL

    from hotspare.cli import main

    assert failover(SERVICE, planned=True, yes=True)["outcome"] == "ok"  # a switchover, reprotected at its end
    row = copies.service_row(SERVICE)
    assert (row.state, row.active_server, row.mirror_server) == ("protected", "mirror-west", "prod-east")
    environment = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    process = subprocess.Popen(
        [sys.executable, "-m", "hotspare.cli", "failback", SERVICE, "--yes"],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        poll(lambda: copies.service_row(SERVICE).state == "failing-over", 90, "the failback to start")
        os.kill(process.pid, signal.SIGKILL)  # the failback process this test started
    finally:
        process.wait(timeout=30)
    capsys.readouterr()
    assert main(["failback", SERVICE]) == 3
    advice = capsys.readouterr().err
    assert f"a failback of {SERVICE} from mirror-west to prod-east is in flight" in advice, advice
    assert f"`hotspare failover {SERVICE} --resume`" in advice and "hotspare reprotect" not in advice
    # the command it names finishes the failback (taking the dead run's lock over)
    assert main(["failover", SERVICE, "--resume", "--yes"]) == 0
    row = copies.service_row(SERVICE)
    assert (row.state, row.active_server, row.mirror_server) == ("protected", "prod-east", "mirror-west")
    assert dns_answer(lab_env) == [address(lab_env, "production")]


def test_plan_is_pure_and_digest_binds_the_copy(protected, lab_env):
    from hotspare import access
    from hotspare.fleet.context import ServiceContext
    from hotspare.inventory.models import utcnow
    from tasks.failover import gather_facts

    facts = gather_facts.fn(ServiceContext.of(access.loaded_fleet(), SERVICE))
    now = utcnow()
    plan = plan_failover(facts, planned=False, now=now)
    assert plan.copy_id == copies.newest_verified(SERVICE, "mirror-west").id and plan.refusal is None
    older = [copy for copy in facts.copies if copy.id != plan.copy_id and copy.status == "verified"]
    if older:
        other = plan_failover(facts, planned=False, now=now, copy_id=older[0].id)
        assert other.digest != plan.digest
    assert plan_failover(facts, planned=False, now=now).digest == plan.digest
    assert f"Plan digest: `{plan.digest}`" in plan.markdown()


def test_operator_approves_in_the_ui_and_the_failover_runs(protected, lab, lab_env):
    from prefect.flow_runs import resume_flow_run

    digest = failover(SERVICE, planned=True, dry_run=True)["plan_digest"]

    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(failover, SERVICE, planned=True, approval_timeout_seconds=120, return_state=True)
        paused = poll(paused_flow_run, 60, "the failover to pause for approval")
        assert dns_answer(lab_env) == [address(lab_env, "production")]  # nothing moves before approval
        resume_flow_run(paused.id, run_input={"decision": "approve", "plan_digest": digest, "operator": "Dana Ops"})
        state = waiting.result(timeout=180)
    assert state.is_completed(), state.message
    assert state.result()["approved_by"] == "Dana Ops"  # a person, not a sentence
    assert "approved by Dana Ops at the pause in the Prefect UI" in state.result()["approval"]
    assert dns_answer(lab_env) == [address(lab_env, "mirror")]


def test_wrong_tsig_key_leaves_dns_unchanged_and_resume_completes(protected, lab, lab_env):
    import base64

    from pydantic import SecretStr

    from blocks.credentials import DnsUpdateKey
    from hotspare import access

    block = access.loaded_fleet().zone(lab_env["zone"]).tsig_key_block
    DnsUpdateKey(key_name=block, secret=SecretStr(base64.b64encode(b"not the key").decode())).save(block, overwrite=True)
    access.forget_credentials()
    try:
        state = failover(SERVICE, yes=True, return_state=True)
        assert state.is_failed() and "BADSIG" in state.message
        assert dns_answer(lab_env) == [address(lab_env, "production")]
        row = copies.service_row(SERVICE)
        assert (row.state, row.active_server, row.failover["target"]) == ("failing-over", "prod-east", "mirror-west")
        with pytest.raises(OSError):  # the app was stopped again on the mirror: no second production
            through_dns_at(lab_env, address(lab_env, "mirror"))
    finally:
        lab.register_blocks()
        access.forget_credentials()
    result = failover(SERVICE, yes=True, resume=True)
    assert result["outcome"] == "ok"
    assert dns_answer(lab_env) == [address(lab_env, "mirror")]
    assert through_dns(lab_env, "health.txt")[:3:2] == (200, address(lab_env, "mirror"))


def through_dns_at(lab_env: dict, where: str):
    service = lab_env["services"][SERVICE]
    return http_get_via_dns(f"http://{service['dns_name']}:{service['app_port']}/health.txt", lambda _name: [where], timeout=2)


def test_cli_shows_the_plan_and_changes_nothing_without_approval(protected, lab_env, capsys):
    from hotspare.cli import main

    assert main(["failover", SERVICE]) == 7  # no terminal to ask on, no --yes: not approved
    captured = capsys.readouterr()
    assert "# Failover plan for app1 (emergency)" in captured.out and "Plan digest:" in captured.out
    assert "not approved" in captured.err
    assert dns_answer(lab_env) == [address(lab_env, "production")]
    assert copies.service_row(SERVICE).state == "protected"
