"""A dying production never blocks its own failover, and no step acts on stale facts — in the lab.

Red-team sequences an operator meets in a real outage: production dies while a replication
hangs in its pre-sync hook, or the replication process is killed mid-copy; the facts change
while a plan waits for approval; a replication is asked for while the service is failed over;
rsync fails for a reason a retry cannot fix; a file cannot be read; a cache is excluded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from test_failover import address, dns_answer, protected, reset_layout, through_dns
from test_replication import writable_copy

from flows.failover import failover
from flows.replicate import replicate_service
from hotspare.cli import main
from hotspare.inventory import copies

from lab_helpers import host_path, paused_flow_run, poll, ssh, tree_digest

pytestmark = pytest.mark.lab

SERVICE = "app1"
# Red-team bound: from "production lost during a replication" to "users on the mirror".
FAILOVER_BOUND_SECONDS = 60


@contextmanager
def fleet_changed(lab_env: dict, tmp_path: Path, **service_fields):
    """Load the lab fleet with app1's fields changed; load the original again afterwards."""
    fleet_file = Path(lab_env["fleet_file"])
    document = yaml.safe_load(fleet_file.read_text())
    service = next(entry for entry in document["services"] if entry["name"] == SERVICE)
    service.update(service_fields)
    changed = tmp_path / "fleet.yaml"
    changed.write_text(yaml.safe_dump(document, sort_keys=False))
    assert main(["fleet", "load", str(changed)]) == 0
    try:
        yield
    finally:
        assert main(["fleet", "load", str(fleet_file)]) == 0


def production_data(lab_env) -> Path:
    return host_path(lab_env, lab_env["services"][SERVICE]["production"], lab_env["services"][SERVICE]["data_path"])


@pytest.mark.parametrize("production_dies", [True, False], ids=["production-dies", "production-answers"])
def test_a_hung_replication_never_blocks_the_emergency_failover(protected, lab, lab_env, tmp_path, production_dies):
    pid_file = host_path(lab_env, "prod-east", "/srv/app1/hook-sleep.pid")
    pid_file.unlink(missing_ok=True)
    # a pre-sync hook that hangs (a database dump stuck on a dying disk), PID recorded so the
    # test can end exactly the process it made
    hook = ["sh", "-c", "sleep 600 & echo $! > /srv/app1/hook-sleep.pid; wait $!; true"]
    before = copies.newest_verified(SERVICE, "mirror-west").id  # what an emergency failover makes live
    with fleet_changed(lab_env, tmp_path, pre_sync=[hook]), ThreadPoolExecutor(1) as pool:
        hung = pool.submit(replicate_service, SERVICE, return_state=True)
        sleeper = int(poll(lambda: pid_file.exists() and pid_file.read_text().strip(), 60, "the hook to hang"))
        try:
            if production_dies:
                lab.fail("prod-east")
            started = time.monotonic()
            result = failover(SERVICE, yes=True)  # takes the replication's lock over at once
            elapsed = time.monotonic() - started
            assert result["outcome"] == "ok" and result["copy_id"] == before
            assert dns_answer(lab_env) == [address(lab_env, "mirror")]
            assert through_dns(lab_env, "health.txt")[:3:2] == (200, address(lab_env, "mirror"))
            print(
                f"\nreplication hung, production {'lost' if production_dies else 'answering'} -> "
                f"users on the mirror: {elapsed:.1f} s"
            )
            assert elapsed < FAILOVER_BOUND_SECONDS
            # while failed over, routine replication is refused with what to do
            refused = replicate_service(SERVICE, return_state=True)
            assert refused.is_failed() and "it is failed-over" in refused.message and "reprotect" in refused.message
        finally:
            lab.heal("prod-east")
            # the hook's sleep this test started (the hook returns); a fence that powered production
            # off has ended it already, with every other process of that host
            with contextlib.suppress(ProcessLookupError):
                os.kill(sleeper, signal.SIGKILL)
        state = hung.result(timeout=120)
    assert state.is_failed()
    if not production_dies:  # its hook returned: it stopped at its lease check, before copying
        assert "no longer holds the lock" in state.message and "not going to copy" in state.message, state.message
    # nothing of the taken-over replication became current
    row = copies.service_row(SERVICE)
    assert (row.active_server, row.failover["copy_id"]) == ("mirror-west", before)
    assert copies.newest_verified(SERVICE, "mirror-west").id == before


def test_replication_killed_mid_copy_then_emergency_failover_at_once(protected, lab, lab_env, prefect_api, monkeypatch):
    from prefect.settings import PREFECT_API_URL

    before = copies.newest_verified(SERVICE, "mirror-west").id
    bulk = production_data(lab_env) / "bulk"
    bulk.mkdir(exist_ok=True)
    for number in range(40):
        (bulk / f"blob-{number}.bin").write_bytes(os.urandom(8 * 2**20))
    environment = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "HOTSPARE_TRANSFER_RETRIES": "0"}
    process = subprocess.Popen(
        [sys.executable, "-m", "hotspare.cli", "replicate", SERVICE],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        root = str(host_path(lab_env, "mirror-west", "/srv/hotspare/app1"))
        arrived = [root + "/copies/*/tree/srv/app1/data/bulk/blob-*", root + "/work/tree/srv/app1/data/bulk/blob-*"]
        import glob

        poll(lambda: len(glob.glob(arrived[0]) + glob.glob(arrived[1])) >= 4, 120, "part of the data to arrive on the mirror")
        os.killpg(process.pid, signal.SIGKILL)  # the replication process group this test started
        process.wait(timeout=30)
        lab.fail("prod-east")
        started = time.monotonic()
        result = failover(SERVICE, yes=True)  # the dead run's lease is still live: taken over
        elapsed = time.monotonic() - started
        print(f"\nreplication killed mid-copy, production lost -> users on the mirror: {elapsed:.1f} s")
        assert result["outcome"] == "ok" and result["copy_id"] == before  # never the half-made copy
        assert elapsed < FAILOVER_BOUND_SECONDS
        assert dns_answer(lab_env) == [address(lab_env, "mirror")]
    finally:
        lab.heal("prod-east")
        for blob in bulk.glob("*"):
            blob.unlink()
        bulk.rmdir()


def test_facts_changed_between_approval_and_execution_stop_the_run_and_show_the_new_plan(protected, lab, lab_env):
    from prefect.flow_runs import resume_flow_run

    shown = failover(SERVICE, dry_run=True)["plan_digest"]

    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(failover, SERVICE, approval_timeout_seconds=120, return_state=True)
        paused = poll(paused_flow_run, 60, "the failover to pause for approval")
        # while the plan waits, a replication makes a newer copy: the approved plan is stale
        assert replicate_service(SERVICE)["outcome"] == "ok"
        resume_flow_run(paused.id, run_input={"decision": "approve", "plan_digest": shown, "operator": "Dana Ops"})
        state = waiting.result(timeout=180)
    assert state.is_failed()
    assert "the facts changed since plan" in state.message and "# Failover plan for app1" in state.message
    new_digest = failover(SERVICE, dry_run=True)["plan_digest"]
    assert new_digest != shown and new_digest in state.message
    assert dns_answer(lab_env) == [address(lab_env, "production")]
    assert copies.service_row(SERVICE).state == "protected"


def test_a_full_mirror_disk_is_a_permanent_error_and_is_not_retried(protected, lab, lab_env, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    monkeypatch.setenv("HOTSPARE_TRANSFER_RETRIES", "2")
    bulk = production_data(lab_env) / "bulk"
    bulk.mkdir(exist_ok=True)
    (bulk / "big.bin").write_bytes(os.urandom(4 * 2**20))
    copies_folder = "/srv/hotspare/app1/copies"
    # a 1 MiB file system over the mirror's copies: the copy runs out of space
    assert ssh(lab_env, "mirror-west", "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", copies_folder).returncode == 0
    try:
        state = replicate_service(SERVICE, return_state=True)
    finally:
        assert ssh(lab_env, "mirror-west", "umount", copies_folder).returncode == 0
        (bulk / "big.bin").unlink()
        bulk.rmdir()
    assert state.is_failed() and "permanent" in state.message and "disk is full" in state.message, state.message

    def recorded_copy_runs():  # the server records task runs in batches: wait for the final state
        with get_client(sync_client=True) as client:
            task_runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
            )
        found = [run for run in task_runs if run.name.startswith("copy to mirror") and run.state and run.state.is_final()]
        return found or None

    [copy_run] = poll(recorded_copy_runs, 60, "the copy's task run to be recorded")
    assert copy_run.run_count == 1  # not retried


def test_an_unreadable_file_fails_verification_with_its_name(protected, lab, lab_env):
    """A file even root cannot read: a write-only kernel attribute (memory compaction's trigger;
    reading it is refused by the kernel, and nothing here writes to it) bind-mounted over a data
    file, in production's own mount namespace."""
    attribute = "/sys/devices/system/node/node0/compact"
    if ssh(lab_env, "prod-east", "test", "-f", attribute).returncode != 0:
        pytest.skip(f"{attribute} is not on this machine")
    unreadable = "/srv/app1/data/unreadable.db"
    (production_data(lab_env) / "unreadable.db").write_text("placeholder")
    before = copies.current_copy(SERVICE).id
    try:
        assert ssh(lab_env, "prod-east", "mount", "--bind", attribute, unreadable).returncode == 0
        assert ssh(lab_env, "prod-east", "cat", unreadable).returncode != 0  # really unreadable, even for root
        state = replicate_service(SERVICE, return_state=True)
        assert state.is_failed()
        assert unreadable in state.message and "verification" in state.message, state.message
        assert copies.current_copy(SERVICE).id == before  # the previous copy stays current
    finally:
        ssh(lab_env, "prod-east", "umount", unreadable)
        (production_data(lab_env) / "unreadable.db").unlink()


def test_an_excluded_cache_is_neither_copied_nor_compared(protected, lab, lab_env, tmp_path):
    cache = production_data(lab_env) / "cache"
    cache.mkdir(exist_ok=True)
    (cache / "page-1.html").write_text("rendered")
    try:
        with fleet_changed(lab_env, tmp_path, exclude=["/srv/app1/data/cache", "*.sock"]):
            result = replicate_service(SERVICE)
            assert result["outcome"] == "ok"
            copy = host_path(lab_env, "mirror-west", f"/srv/hotspare/app1/copies/{result['copy_id']}/tree/srv/app1/data")
            assert not (copy / "cache").exists()
            assert tree_digest(copy) == {
                path: digest for path, digest in tree_digest(production_data(lab_env)).items() if not path.startswith("cache/")
            }
            # a stray file in the copy's cache folder is not compared either
            with writable_copy(copy):
                (copy / "cache").mkdir()
                (copy / "cache" / "stray").write_text("not compared")
            assert main(["verify", SERVICE]) == 0
    finally:
        for entry in cache.glob("*"):
            entry.unlink()
        cache.rmdir()
    reset_layout(lab, lab_env)


def test_forced_rebuild_with_the_mirror_still_serving_fences_it_first(protected, lab, lab_env, fleet):
    from test_rebuild import _restore_lab

    from flows.backup import backup
    from flows.rebuild import rebuild

    backup(service=SERVICE)
    mirror = address(lab_env, "mirror")
    assert through_dns_at(lab_env, mirror) == 200  # the lab's mirror runs the app too
    lab.fail("prod-east")
    standby = None
    try:
        plan = rebuild(service=SERVICE, force=True, dry_run=True)
        standby = fleet.server(plan["plan"]["standby"])
        result = rebuild(service=SERVICE, force=True, approved_plan_digest=plan["plan_digest"])
        assert result["fencing"]["mirror-west"]["fenced"] is True
        assert result["fencing"]["prod-east"]["fenced"] is False
        with pytest.raises(OSError):  # the mirror no longer serves: never two productions
            through_dns_at(lab_env, mirror)
        assert dns_answer(lab_env) == [standby.address]
    finally:
        lab.heal("prod-east")
        _restore_lab(fleet, address(lab_env, "production"), standby)
        reset_layout(lab, lab_env)


def through_dns_at(lab_env: dict, where: str) -> int:
    from hotspare.probes import http_get_via_dns

    service = lab_env["services"][SERVICE]
    url = f"http://{service['dns_name']}:{service['app_port']}/health.txt"
    return http_get_via_dns(url, lambda _name: [where], timeout=2)[0]
