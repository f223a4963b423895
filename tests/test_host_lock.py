"""The host lock on the real lab: app1 and app3 share mirror-west, and their account merges
(``tasks/account_merge.py: apply_accounts``) rewrite the same /etc/passwd, shadow, group and
gshadow there. Without the lock two merges at once lost one service's accounts and left
``/etc/shadow.hotspare-new`` behind; with it both keep their accounts, every round.

The lab tests leave mirror-west's account files as they found them. The lock's shell programs
run with the machine's own sh are tests/unit/test_host_lock_plans.py.
"""

from __future__ import annotations

import os
import select
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hotspare.planning import host_lock as plan

from lab_helpers import host_path, poll, ssh, ssh_argv

MIRROR = "mirror-west"
SERVICES = {"app1": ("app1-web", "app1-batch"), "app3": ("app3-web", "app3-batch")}
ACCOUNT_FILES = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow")
ROUNDS = 10


# ----- the programs, with the machine's sh ------------------------------------------------------


# ----- the lab ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_mirror(fleet, lab_env):
    """app1 and app3 each with a current copy on mirror-west; mirror-west's account files as
    found, restored afterwards."""
    from flows.replicate import replicate_service
    from hotspare.inventory import copies

    copy_ids = {}
    for service in SERVICES:
        row = copies.service_row(service)
        assert (row.state, row.mirror_server) == ("protected", MIRROR), (service, row.state, row.mirror_server)
        current = copies.current_copy(service)
        if current is None or current.target_server != MIRROR:
            assert replicate_service(service)["outcome"] == "ok"
            current = copies.current_copy(service)
        copy_ids[service] = current.id
    found = {path: host_path(lab_env, MIRROR, path).read_bytes() for path in ACCOUNT_FILES}
    yield copy_ids
    for path, content in found.items():
        host_path(lab_env, MIRROR, path).write_bytes(content)


def without_services(lab_env) -> None:
    """mirror-west's account files without any line of app1's or app3's accounts."""
    names = {user for users in SERVICES.values() for user in users}
    for path in ACCOUNT_FILES:
        file = host_path(lab_env, MIRROR, path)
        lines = file.read_text(errors="surrogateescape").splitlines(keepends=True)
        file.write_text("".join(line for line in lines if line.split(":", 1)[0] not in names), errors="surrogateescape")


def names_in(lab_env, path: str) -> set[str]:
    return {line.split(":", 1)[0] for line in host_path(lab_env, MIRROR, path).read_text(errors="replace").splitlines()}


def leftovers(lab_env) -> list[str]:
    return sorted(path.name for path in host_path(lab_env, MIRROR, "/etc").iterdir() if plan.TEMPORARY_MARK in path.name)


def merge(service: str, copy_id: str) -> dict:
    """The real merge step, as a replication runs it (called inside ``disable_run_logger``:
    without a run its log lines are dropped)."""
    from tasks.account_merge import apply_accounts

    return apply_accounts(service, copy_id, MIRROR, locked=True)


@pytest.fixture
def no_run_logger():
    """Once for the test (it sets the loggers' shared flag; threads entering it would race)."""
    from prefect.logging import disable_run_logger

    with disable_run_logger():
        yield


def test_concurrent_merges_of_two_services_keep_both_every_round(shared_mirror, lab_env, no_run_logger):
    # what a run killed between writing and renaming left, with the old fixed name and a new one
    for name in ("shadow.hotspare-new", "passwd.hotspare-new-0123456789ab"):
        host_path(lab_env, MIRROR, f"/etc/{name}").write_text("left by a killed run\n")
    started = time.monotonic()
    for round_number in range(ROUNDS):
        without_services(lab_env)
        together = threading.Barrier(len(SERVICES))

        def at_once(service: str, together: threading.Barrier = together) -> dict:
            together.wait(timeout=30)
            return merge(service, shared_mirror[service])

        with ThreadPoolExecutor(max_workers=len(SERVICES)) as pool:
            results = dict(zip(SERVICES, pool.map(at_once, SERVICES)))
        for service, users in SERVICES.items():
            assert set(users) <= set(results[service]["users"]), (round_number, results[service])
            for path in ("/etc/passwd", "/etc/shadow"):
                assert set(users) <= names_in(lab_env, path), f"round {round_number}: {service} lost in {path}"
            assert set(users) <= names_in(lab_env, "/etc/group") | names_in(lab_env, "/etc/passwd")
        assert leftovers(lab_env) == [], f"round {round_number}"
    print(f"{ROUNDS} rounds of two concurrent merges on {MIRROR}: {time.monotonic() - started:.2f} s")


class RemoteHolder:
    """Another orchestrator holding mirror-west's host lock: the lock command over plain ssh."""

    def __init__(self, lab_env: dict, note: str) -> None:
        self.note = note
        self.process = subprocess.Popen(
            ssh_argv(lab_env, MIRROR, plan.hold_argv(note, 10)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        ready, deadline = b"", time.monotonic() + 20
        while plan.LOCKED_LINE not in ready:
            assert time.monotonic() < deadline and self.process.poll() is None, "the holder never took the lock"
            if select.select([self.process.stdout], [], [], 0.5)[0]:
                ready += os.read(self.process.stdout.fileno(), 4096)

    def release(self) -> int:
        self.process.stdin.close()
        return self.process.wait(timeout=20)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=20)


def processes_naming(text: str) -> list[int]:
    """PIDs of processes on this machine (every lab host runs here) whose command line holds text."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_a_held_lock_makes_the_merge_wait_then_it_succeeds(shared_mirror, lab_env, no_run_logger):
    without_services(lab_env)
    holder = RemoteHolder(lab_env, f"test holder {uuid.uuid4().hex}")
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            merged = pool.submit(merge, "app3", shared_mirror["app3"])
            # the merge's own lock command is running and waiting (its note names this process)
            poll(
                lambda: processes_naming(f"merge of app3's accounts (hotspare pid {os.getpid()}"),
                20,
                "the merge to ask for the lock",
            )
            assert not merged.done() and "app3-web" not in names_in(lab_env, "/etc/passwd")
            assert holder.release() == 0
            result = merged.result(timeout=60)
    finally:
        holder.stop()
    assert {"app3-web", "app3-batch"} <= set(result["users"]) <= names_in(lab_env, "/etc/passwd")
    assert leftovers(lab_env) == []


def test_a_wait_past_its_bound_names_the_host_and_the_holder(fleet, lab_env):
    from hotspare import access
    from tasks.host_lock import HostBusy, host_lock

    holder = RemoteHolder(lab_env, f"test holder {uuid.uuid4().hex}")
    try:
        with access.connect(fleet, MIRROR) as mirror, pytest.raises(HostBusy) as refused:
            with host_lock(mirror, "merge of app3's accounts", wait_seconds=1):
                pytest.fail("took a lock another run holds")
    finally:
        holder.stop()
    message = str(refused.value)
    assert message.startswith(f"{MIRROR}: could not take the host lock ({plan.HOST_LOCK_FILE}) for the merge of app3's")
    assert f"held by {holder.note}, since " in message and "within 1 s" in message
    assert refused.value.host == MIRROR and refused.value.holder.startswith(holder.note)


def test_a_killed_holder_frees_the_lock(fleet, lab_env):
    from hotspare import access
    from tasks.host_lock import host_lock

    holder = RemoteHolder(lab_env, f"killed holder {uuid.uuid4().hex}")
    assert processes_naming(holder.note), "the holder's lock command runs on the host"
    holder.process.kill()  # the orchestrator dies: its SSH connection closes
    holder.process.wait(timeout=20)
    poll(lambda: not processes_naming(holder.note), 20, "the dead holder's lock command to end")
    started = time.monotonic()
    with access.connect(fleet, MIRROR) as mirror, host_lock(mirror, "the lock test", wait_seconds=5) as held:
        held.check("the end of the test")
        note = host_path(lab_env, MIRROR, plan.HOST_LOCK_FILE).read_text()
    assert note.startswith(f"the lock test (hotspare pid {os.getpid()}, ")
    assert time.monotonic() - started < 5


def test_a_service_user_cannot_open_the_lock_to_hold_it(fleet, lab_env):
    """A customer's app on the shared mirror (its own user) cannot take the lock and hold every
    other service's changes back: the file is root's alone."""
    from hotspare import access
    from tasks.host_lock import host_lock

    with access.connect(fleet, MIRROR) as mirror, host_lock(mirror, "the lock test", wait_seconds=5):
        pass  # the file exists now
    attempt = ssh(
        lab_env,
        MIRROR,
        "setpriv",
        "--reuid",
        "2001",
        "--regid",
        "2001",
        "--clear-groups",
        "flock",
        "-n",
        plan.HOST_LOCK_FILE,
        "true",
    )
    assert attempt.returncode != 0 and "Permission denied" in attempt.stderr, (attempt.returncode, attempt.stderr)
    assert host_path(lab_env, MIRROR, plan.HOST_LOCK_FILE).stat().st_mode & 0o777 == 0o600
