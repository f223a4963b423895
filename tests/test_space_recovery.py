"""A service at its space bound can still finish, prune and recover its copies (btrfs snapshots filled
by rsync: the lab's default ``auto`` on its btrfs mirror, simple quotas turned on by the quota step).

Under quotas the kernel refuses metadata changes in a group at or past its limit (making a copy
read-only or writable again: the first step of pruning one), so a service stuck at its bound would
be refused forever while its copies age (``planning/space_recovery.py``). Lab: app3 on prod-east,
mirrored to mirror-west.

Checked independently of the code under test: the group's numbers and limit read with ``btrfs
qgroup show`` on the mirror, the copies and the working tree listed on this machine, the current
copy hashed here.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from flows.replicate import replicate_service
from hotspare.inventory import copies
from hotspare.planning import replication as replication_plan
from hotspare.planning import space, space_recovery
from hotspare.planning.replication import copy_tree

from lab_helpers import host_path, lab_fleet_changed, poll, ssh, tree_digest

SERVICE = "app3"
BOUND = 64 * space.MIB
PAUSED = "/srv/space-recovery-paused.pid"  # the paused clean-up's shell writes its PID here


def mirror(lab_env) -> str:
    return lab_env["services"][SERVICE]["mirror"]


def group(lab_env) -> tuple[int, str]:
    """(referenced bytes, limit as the kernel shows it: a number or ``none``) of the service's group."""
    shown = ssh(lab_env, mirror(lab_env), "btrfs", "qgroup", "show", "-re", "--raw", "/srv")
    assert shown.returncode == 0, shown.stderr
    row = next(line.split() for line in shown.stdout.splitlines() if line.split()[:1] == [space.qgroup_id(SERVICE)])
    return int(row[1]), row[3]


def settled_bytes(lab_env) -> int:
    """The group's bytes once the cleaner dropped every deleted subvolume (bounded wait)."""
    synced = ssh(lab_env, mirror(lab_env), "timeout", "120", "btrfs", "subvolume", "sync", "/srv", timeout=150)
    assert synced.returncode == 0, synced.stderr
    return group(lab_env)[0]


def copies_on_disk(lab_env) -> list[str]:
    return sorted(path.name for path in host_path(lab_env, mirror(lab_env), f"/srv/hotspare/{SERVICE}/copies").iterdir())


def production_file(lab_env, name: str) -> Path:
    service = lab_env["services"][SERVICE]
    return host_path(lab_env, service["production"], f"{service['data_path']}/{name}")


def current_data(lab_env) -> tuple[str, dict[str, str]]:
    row = copies.current_copy(SERVICE)
    data = lab_env["services"][SERVICE]["data_path"]
    return row.id, tree_digest(host_path(lab_env, mirror(lab_env), copy_tree(SERVICE, row.id) + data))


def listed() -> list[str]:
    """The service's copies the inventory lists (pruned ones are not)."""
    return [row.id for row in copies.copies_of(SERVICE)]


def refusal() -> str:
    with pytest.raises(Exception) as refused:
        replicate_service(SERVICE)
    return str(refused.value)


def bounded(keep: int, space_gib: float | None = BOUND / space.GIB):
    def change(data: dict) -> None:
        entry = next(s for s in data["services"] if s["name"] == SERVICE)
        entry["copies_to_keep"] = keep
        if space_gib is not None:
            entry["space_gib"] = space_gib

    return change


def kill_when_lifted(lab_env, seen: dict) -> threading.Thread:
    """Wait (bounded) for the paused clean-up's PID, note the group's limit while it is lifted, and
    kill that shell outright (SIGKILL, by its PID: the lab's hosts share this machine's PID space)."""
    marker = host_path(lab_env, mirror(lab_env), PAUSED)

    def watch() -> None:
        pid = int(poll(lambda: marker.exists() and marker.read_text().strip(), 300, "the clean-up to pause"))
        seen["limit"] = group(lab_env)[1]
        assert PAUSED in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        os.kill(pid, signal.SIGKILL)
        seen["killed"] = pid

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def app3_restored(fleet, lab_env):
    """app3's production data as the lab made it, and a verified copy of it, once the test is over."""
    planted = ["bulk.bin", "year-1.bin", "year-2.bin", "year-3.bin"]
    host_path(lab_env, mirror(lab_env), PAUSED).unlink(missing_ok=True)
    yield
    for name in planted:
        production_file(lab_env, name).unlink(missing_ok=True)
    host_path(lab_env, mirror(lab_env), PAUSED).unlink(missing_ok=True)
    assert replicate_service(SERVICE, force=True)["outcome"] == "ok"  # the planted files' copies were the baseline


def test_a_copy_refused_at_the_bound_cleans_up_and_the_next_run_recovers(app3_restored, lab_env, tmp_path, monkeypatch):
    with lab_fleet_changed(lab_env, tmp_path, bounded(keep=2)):
        assert replicate_service(SERVICE)["outcome"] == "ok"
        assert replicate_service(SERVICE)["outcome"] == "ok"  # two copies: what copies_to_keep keeps
        kept, before = copies_on_disk(lab_env), current_data(lab_env)
        held = settled_bytes(lab_env)
        assert len(kept) == 2 and held < 16 * space.MIB, (kept, held)

        # production grows past the bound: the preflight's estimate lets the copy start, the kernel stops it
        production_file(lab_env, "bulk.bin").write_bytes(os.urandom(80 * space.MIB))
        message = refusal()
        assert f"replication of {SERVICE} refused: its area on {mirror(lab_env)} would pass its bound of 64.0 MiB" in message
        assert "the kernel refused a write" in message and space.QUOTA_EXCEEDED in message
        # the unfinished working tree went at once: the group holds its copies again, under its limit
        assert not host_path(lab_env, mirror(lab_env), f"/srv/hotspare/{SERVICE}/work").exists()
        assert settled_bytes(lab_env) <= held + 4 * space.MIB
        assert group(lab_env)[1] == str(BOUND)
        assert copies_on_disk(lab_env) == kept and current_data(lab_env) == before

        # refused again, and this time the clean-up is killed while the limit is lifted
        pause = f"echo $$ > {PAUSED}; n=0; while [ $n -lt 3000 ]; do sleep 0.1; n=$((n + 1)); done; "
        lifted = 'echo "hotspare-limit-lifted=$limit" >&2; '
        assert lifted in space_recovery.LIFTED_LIMIT_SCRIPT
        monkeypatch.setattr(
            space_recovery, "LIFTED_LIMIT_SCRIPT", space_recovery.LIFTED_LIMIT_SCRIPT.replace(lifted, lifted + pause)
        )
        seen: dict = {}
        watcher = kill_when_lifted(lab_env, seen)
        message = refusal()
        watcher.join(timeout=60)
        assert seen.get("killed") and seen["limit"] == "none", seen
        assert "would pass its bound of 64.0 MiB" in message
        assert group(lab_env)[1] == "none"  # left lifted by the killed clean-up
        assert host_path(lab_env, mirror(lab_env), f"/srv/hotspare/{SERVICE}/work").exists()  # still full
        monkeypatch.undo()

        # production shrinks back: the next run sets the limit again, makes room and copies
        production_file(lab_env, "bulk.bin").unlink()
        result = replicate_service(SERVICE)
        assert result["outcome"] == "ok", result
        assert group(lab_env)[1] == str(BOUND)
        now = copies_on_disk(lab_env)
        assert len(now) == 2 and now[0] == kept[1] and now[1] == copies.current_copy(SERVICE).id, (kept, now)
        assert kept[0] not in listed()  # pruned
        assert settled_bytes(lab_env) <= held + 4 * space.MIB
        copy_id, data = current_data(lab_env)
        assert copy_id == now[1] and "bulk.bin" not in data and data.keys() == before[1].keys()


def test_a_bound_lowered_below_the_copies_refuses_until_fewer_are_kept(app3_restored, lab_env, tmp_path):
    with lab_fleet_changed(lab_env, tmp_path, bounded(keep=3, space_gib=None)):
        for year in (1, 2, 3):  # three copies of 30 MiB each that share nothing: 90 MiB
            production_file(lab_env, f"year-{year - 1}.bin").unlink(missing_ok=True)
            production_file(lab_env, f"year-{year}.bin").write_bytes(os.urandom(30 * space.MIB))
            assert replicate_service(SERVICE)["outcome"] == "ok"
    held = settled_bytes(lab_env)
    assert held > BOUND + 16 * space.MIB, held
    kept, before = copies_on_disk(lab_env), current_data(lab_env)
    assert len(kept) >= 3, kept

    with lab_fleet_changed(lab_env, tmp_path, bounded(keep=3)):
        message = refusal()
    assert f"replication of {SERVICE} refused: its area on {mirror(lab_env)} would pass its bound of 64.0 MiB" in message
    assert "copies_to_keep is 3, and lowering it takes effect on the next run" in message
    assert "never the current one" in message
    # nothing the fleet file keeps was removed, and the kernel holds the lowered bound
    assert copies_on_disk(lab_env) == kept and current_data(lab_env) == before
    assert group(lab_env)[1] == str(BOUND)

    with lab_fleet_changed(lab_env, tmp_path, bounded(keep=1)):
        result = replicate_service(SERVICE)
    assert result["outcome"] == "ok", result
    now = copies_on_disk(lab_env)
    assert now == [copies.current_copy(SERVICE).id], now
    assert not set(kept) & set(listed())  # all pruned
    assert settled_bytes(lab_env) <= BOUND
    assert current_data(lab_env)[1]["year-3.bin"] == before[1]["year-3.bin"]  # the same data, in the one copy kept


def test_a_copy_that_reaches_its_bound_is_still_made_read_only_promoted_and_pruned(app3_restored, lab_env, tmp_path, monkeypatch):
    """The group at its limit right after rsync (the limit lowered below what it holds, the state a
    copy that filled it leaves): the copy's read-only snapshot and the prune are metadata only and
    must still pass; the limit the kernel held is set again afterwards, and the next run's quota
    step sets the bound."""
    with lab_fleet_changed(lab_env, tmp_path, bounded(keep=2)):
        assert replicate_service(SERVICE)["outcome"] == "ok"
        assert replicate_service(SERVICE)["outcome"] == "ok"
        kept = copies_on_disk(lab_env)
        assert len(kept) == 2 and group(lab_env)[0] > 64 * 1024, kept
        real = replication_plan.rsync_copy_argv
        at_the_limit = f'"$@"; status=$?; btrfs qgroup limit 16K {space.qgroup_id(SERVICE)} /srv; exit "$status"'

        def filled(*args, **kwargs):  # rsync on the mirror, then the group is past its limit
            return ["sh", "-c", at_the_limit, "sh", *real(*args, **kwargs)]

        monkeypatch.setattr(replication_plan, "rsync_copy_argv", filled)
        result = replicate_service(SERVICE)
        monkeypatch.undo()
        assert result["outcome"] == "ok", result
        now = copies_on_disk(lab_env)
        assert now == [kept[1], copies.current_copy(SERVICE).id], (kept, now)
        made = f"/srv/hotspare/{SERVICE}/copies/{now[1]}"
        shown = ssh(lab_env, mirror(lab_env), "btrfs", "property", "get", "-ts", made, "ro")
        assert shown.stdout.strip() == "ro=true", shown  # made read-only past the limit
        assert group(lab_env)[1] == str(16 * 1024)  # the limit the kernel held, set again
        assert replicate_service(SERVICE)["outcome"] == "ok"
        assert group(lab_env)[1] == str(BOUND)  # the quota step sets the bound every run
