"""The hard-link copy back-end end to end in the real lab, on mirrors whose disks are btrfs.

The fleet file's ``replication.copy_backend: hard-links`` keeps rsync ``--link-dest`` folders
even where snapshots are possible. In one pass over app1 (prod-east -> mirror-west):

- the switch from snapshot copies to hard-linked folders is logged, and the first such copy
  verifies although nothing can be linked across a snapshot's subvolume;
- a copy is a plain folder on the mirror (not a subvolume), an unchanged file shares its
  inode with the previous copy, and a permission-only change on production reaches the new
  copy only;
- an emergency failover makes a hard-linked copy live (by rsync, never linked to the copy),
  reprotect replicates back with hard links, and a planned failback brings app1 home;
- a drill boots the newest hard-linked copy in its bubble and changes nothing;
- a copy that failed verification and is resumed by the next run: a permission-only change
  on production in between reaches the resumed copy only, never the older copy its files are
  hard links of;
- a read-only snapshot copy left behind by a failed run is not resumed into by a hard-link run;
- back on ``auto``, the next copy says the back-end changes to btrfs snapshots and verifies.

Rebuild from backup is not repeated here: it restores restic snapshots onto a standby and
never reads a mirror's copies, so the copy back-end does not reach it.

The session's lab and inventory are shared: the module loads the lab's own fleet file again and
puts app1 back in its starting layout at the end, whatever happened.
"""

from __future__ import annotations

import json
import stat
import uuid
from pathlib import Path

import pytest
from test_drill import nothing_left
from test_drill import snapshot as drill_snapshot
from test_failover import address, reset_layout, through_dns

from flows.failover import failover
from flows.replicate import replicate_service
from flows.reprotect import reprotect
from hotspare.cli import main
from hotspare.inventory import copies, copy_stores, locks
from hotspare.planning.replication import copy_root, copy_tree

from lab_helpers import host_path, poll, ssh, tree_digest, wait_for

SERVICE = "app1"
PRODUCTION, MIRROR = "prod-east", "mirror-west"


@pytest.fixture(scope="module")
def home_layout(fleet, lab, lab_env):
    """app1 in its starting layout before the module and after it (also after a failure)."""
    reset_layout(lab, lab_env)
    yield
    reset_layout(lab, lab_env)


@pytest.fixture(scope="module")
def marked_files(lab_env):
    """Files of this module on production (unique names), removed again at the end."""
    data = host_path(lab_env, PRODUCTION, lab_env["services"][SERVICE]["data_path"])
    tag = uuid.uuid4().hex[:8]
    names = {
        "unchanged": f"hard-link-unchanged-{tag}.txt",
        "permission": f"hard-link-permission-{tag}.txt",
        "failover": f"hard-link-failover-{tag}.txt",
        "resumed": f"hard-link-resumed-{tag}.txt",
    }
    files = {key: data / name for key, name in names.items()}
    files["unchanged"].write_text("never changes\n")
    files["permission"].write_text("only its mode changes\n")
    files["permission"].chmod(0o644)
    files["failover"].write_text("in the copy before the outage\n")
    files["resumed"].write_text("its mode changes while a copy waits to be resumed\n")
    files["resumed"].chmod(0o644)
    yield files
    for path in (data / name for name in names.values()):
        path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def use_backend(home_layout, lab_env, tmp_path_factory):
    """``use_backend(name)`` loads the lab's fleet with ``replication.copy_backend: name``; the
    lab's own fleet file (``auto``) is loaded again at the end."""
    import yaml

    original = Path(lab_env["fleet_file"])
    folder = tmp_path_factory.mktemp("copy-backend")

    def use(backend: str, smaller_mirror: bool = False) -> None:
        data = yaml.safe_load(original.read_text())
        data["replication"] = {**(data.get("replication") or {}), "copy_backend": backend}
        for server in data["servers"]:
            if smaller_mirror and server["name"] == MIRROR:  # its copies then fail verification
                server["hardware"]["memory_mb"] = 1
        variant = folder / f"fleet-{backend}{'-smaller-mirror' if smaller_mirror else ''}.yaml"
        variant.write_text(yaml.safe_dump(data, sort_keys=False))
        assert main(["fleet", "load", str(variant)]) == 0

    yield use
    assert main(["fleet", "load", str(original)]) == 0


def replicated(**options) -> tuple[dict, list[str]]:
    """One replication of app1: its result and its run log's lines."""
    state = replicate_service(SERVICE, return_state=True, **options)
    assert state.is_completed(), state.message
    return state.result(), run_log(state.state_details.flow_run_id, "verified and current")


def run_log(flow_run_id, last_words: str) -> list[str]:
    """The flow run's log lines, once the line with ``last_words`` has arrived (logs lag)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:

        def lines():
            found = [
                log.message for log in client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            ]
            return found if any(last_words in line for line in found) else None

        return wait_for(f"the run log line with {last_words!r}", lines, seconds=30)


def copy_data(lab_env: dict, server: str, copy_id: str) -> Path:
    """A copy's data folder, seen from this machine."""
    return host_path(lab_env, server, copy_tree(SERVICE, copy_id) + lab_env["services"][SERVICE]["data_path"])


def is_subvolume_on(lab_env: dict, server: str, path: str) -> bool:
    """What the server itself says: ``btrfs subvolume show`` exits 0 only for a subvolume."""
    return ssh(lab_env, server, "btrfs", "subvolume", "show", path).returncode == 0


def assert_hard_linked_folder(lab_env: dict, server: str, copy_id: str) -> None:
    """The copy is a plain folder on a btrfs filesystem: hard links were chosen, not forced."""
    filesystem = ssh(lab_env, server, "stat", "-f", "-c", "%T", copy_root(SERVICE, copy_id))
    assert filesystem.stdout.strip() == "btrfs", filesystem
    assert not is_subvolume_on(lab_env, server, copy_root(SERVICE, copy_id))
    assert not is_subvolume_on(lab_env, server, copy_tree(SERVICE, copy_id) + lab_env["services"][SERVICE]["data_path"])
    assert copy_stores.store_of(SERVICE, server).backend == "hard-links"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_hard_linked_copies_share_unchanged_files_and_keep_older_permissions(use_backend, marked_files, lab_env):
    # Start from a snapshot copy, as every mirror of the lab keeps by default.
    current = copies.current_copy(SERVICE)
    if current is None or current.target_server != MIRROR or not is_subvolume_on(lab_env, MIRROR, copy_root(SERVICE, current.id)):
        use_backend("auto")
        replicated()
    assert is_subvolume_on(lab_env, MIRROR, copy_root(SERVICE, copies.current_copy(SERVICE).id))

    use_backend("hard-links")
    first, log = replicated()
    # from btrfs-send where production's data path is a subvolume (the lab's), else btrfs-snapshot
    assert any("to hard-links: hard-linked copies: the fleet file asks for them" in line for line in log), log
    assert_hard_linked_folder(lab_env, MIRROR, first["copy_id"])
    production = host_path(lab_env, PRODUCTION, lab_env["services"][SERVICE]["data_path"])
    assert tree_digest(copy_data(lab_env, MIRROR, first["copy_id"])) == tree_digest(production)

    marked_files["permission"].chmod(0o600)  # permission-only: same bytes, same mtime
    second, log = replicated()
    assert not any("changes from" in line for line in log), log
    assert_hard_linked_folder(lab_env, MIRROR, second["copy_id"])
    older, newer = copy_data(lab_env, MIRROR, first["copy_id"]), copy_data(lab_env, MIRROR, second["copy_id"])
    name = marked_files["unchanged"].name
    assert (older / name).stat().st_ino == (newer / name).stat().st_ino
    assert (newer / name).stat().st_nlink >= 2
    name = marked_files["permission"].name
    assert (mode(older / name), mode(newer / name)) == (0o644, 0o600)
    assert (older / name).stat().st_ino != (newer / name).stat().st_ino
    assert tree_digest(newer) == tree_digest(production)
    assert copies.current_copy(SERVICE).id == second["copy_id"] and copies.current_copy(SERVICE).status == "verified"


def test_failover_reprotect_and_failback_with_hard_linked_copies(use_backend, marked_files, lab, lab_env):
    use_backend("hard-links")
    data_path = lab_env["services"][SERVICE]["data_path"]
    name = marked_files["failover"].name
    current = copies.current_copy(SERVICE).id
    if is_subvolume_on(lab_env, MIRROR, copy_root(SERVICE, current)) or not (copy_data(lab_env, MIRROR, current) / name).exists():
        current = replicated()[0]["copy_id"]  # this test alone: a hard-linked copy first
    assert_hard_linked_folder(lab_env, MIRROR, current)
    lab.fail(PRODUCTION)

    result = failover(SERVICE, yes=True)
    assert (result["outcome"], result["copy_id"]) == ("ok", current)
    assert through_dns(lab_env, name) == (200, b"in the copy before the outage\n", address(lab_env, "mirror"))
    # The live tree is made from the copy by rsync, never linked to it: writing in place on
    # the live file leaves the copy as it was verified.
    live, in_copy = host_path(lab_env, MIRROR, data_path) / name, copy_data(lab_env, MIRROR, current) / name
    assert live.stat().st_ino != in_copy.stat().st_ino
    with live.open("r+") as handle:
        handle.write("IN")
    assert in_copy.read_text() == "in the copy before the outage\n"
    live.write_text("written on the mirror while failed over\n")

    lab.heal(PRODUCTION)
    assert ssh(lab_env, PRODUCTION, "/srv/app1/app/ctl", "stop").returncode == 0
    protected = reprotect(SERVICE, yes=True)
    assert (protected["production"], protected["mirror"]) == (MIRROR, PRODUCTION)
    assert_hard_linked_folder(lab_env, PRODUCTION, protected["copy_id"])
    assert (
        copy_data(lab_env, PRODUCTION, protected["copy_id"]) / name
    ).read_text() == "written on the mirror while failed over\n"

    home = failover(SERVICE, planned=True, yes=True)
    assert home["outcome"] == "ok" and home["reprotect"]["outcome"] == "ok"
    row = copies.service_row(SERVICE)
    assert (row.state, row.active_server, row.mirror_server) == ("protected", PRODUCTION, MIRROR)
    assert through_dns(lab_env, name) == (200, b"written on the mirror while failed over\n", address(lab_env, "production"))
    current = copies.current_copy(SERVICE)
    assert (current.target_server, current.status) == (MIRROR, "verified")
    assert_hard_linked_folder(lab_env, MIRROR, current.id)


def test_a_drill_boots_a_hard_linked_copy_and_touches_nothing(use_backend, marked_files, lab_env, capsys):
    """The drill's writable layer is an overlay on the copy, whatever the back-end: on a
    hard-linked folder the app's writes must reach neither the copy nor the older copies its
    files are links of."""
    use_backend("hard-links")
    newest = copies.newest_verified(SERVICE, MIRROR)
    if newest is None or is_subvolume_on(lab_env, MIRROR, copy_root(SERVICE, newest.id)):
        replicated()  # this test alone: a hard-linked copy first
        newest = copies.newest_verified(SERVICE, MIRROR)
    assert_hard_linked_folder(lab_env, MIRROR, newest.id)
    poll(lambda: locks.holder_of(SERVICE) is None, 60, "app1's lock to be free")
    before = drill_snapshot(lab_env)  # production, the mirror's copies (every inode's bytes), DNS

    capsys.readouterr()
    assert main(["drill", SERVICE, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["outcome"], result["copy_id"], result["host"]) == ("ok", newest.id, MIRROR)
    assert result["cleanup_proven"] is True and result["canary"] == "logged in as app1-web"
    assert result["isolation"]["route"].startswith(f"local {lab_env['hosts'][PRODUCTION]['address']} dev lo")
    assert result["isolation"]["default_route"] is False
    assert drill_snapshot(lab_env) == before
    nothing_left(lab_env, result["drill_id"])


def test_resumed_copy_keeps_the_older_copys_permissions(use_backend, marked_files, lab_env):
    """A copy that failed verification stays on the mirror and the next run resumes it. Its
    files are hard links of the previous copy's (here the current one); a permission-only change
    on production in between must reach the resumed copy only: rsync updates the attributes of
    a file already in its destination in place, so every link that file shares must be broken
    before a hard-linked copy is resumed."""
    use_backend("hard-links")
    base = copies.current_copy(SERVICE).id
    if is_subvolume_on(lab_env, MIRROR, copy_root(SERVICE, base)):
        base = replicated()[0]["copy_id"]  # this test alone: a hard-linked copy first
    name = marked_files["resumed"].name
    assert mode(copy_data(lab_env, MIRROR, base) / name) == 0o644

    use_backend("hard-links", smaller_mirror=True)
    state = replicate_service(SERVICE, return_state=True)
    assert state.is_failed() and "failed verification" in state.message, state.message
    [interrupted] = [row for row in copies.copies_of(SERVICE, MIRROR) if row.status != "verified"][:1]
    assert (copy_data(lab_env, MIRROR, interrupted.id) / name).stat().st_ino == (
        copy_data(lab_env, MIRROR, base) / name
    ).stat().st_ino

    marked_files["resumed"].chmod(0o600)  # permission-only: same bytes, same mtime
    use_backend("hard-links")
    resumed, log = replicated()
    assert any(f"resuming the interrupted copy {interrupted.id}" in line for line in log), log
    assert mode(copy_data(lab_env, MIRROR, resumed["copy_id"]) / name) == 0o600
    assert mode(copy_data(lab_env, MIRROR, base) / name) == 0o644, "the permission change reached the older copy"


def test_hard_links_after_a_failed_snapshot_copy(use_backend, lab_env):
    """A snapshot copy that failed verification (a read-only subvolume) is left on the mirror;
    the next run, now with hard links, must not resume into it: rsync cannot write there, and
    the failed attempt would be resumed again by every later run."""
    use_backend("auto", smaller_mirror=True)
    state = replicate_service(SERVICE, return_state=True)
    assert state.is_failed() and "failed verification" in state.message, state.message
    [failed] = [row for row in copies.copies_of(SERVICE, MIRROR) if row.status != "verified"][:1]
    assert is_subvolume_on(lab_env, MIRROR, copy_root(SERVICE, failed.id))

    use_backend("hard-links")
    result, _ = replicated()
    assert_hard_linked_folder(lab_env, MIRROR, result["copy_id"])
    production = host_path(lab_env, PRODUCTION, lab_env["services"][SERVICE]["data_path"])
    assert tree_digest(copy_data(lab_env, MIRROR, result["copy_id"])) == tree_digest(production)


def test_auto_switches_back_to_snapshots_and_verifies(use_backend, lab_env):
    use_backend("auto")
    result, log = replicated()
    # auto keeps snapshots filled by rsync (shipping is asked for: copy_backend btrfs-send)
    assert any(
        "copy back-end changes from hard-links to btrfs-snapshot: btrfs snapshots: the copies folder is on btrfs" in line
        for line in log
    ), log
    store = copy_stores.store_of(SERVICE, MIRROR)
    assert store.backend == "btrfs-snapshot" and store.reason.startswith("btrfs snapshots: the copies folder is on btrfs")
    assert is_subvolume_on(lab_env, MIRROR, copy_root(SERVICE, result["copy_id"]))
    current = copies.current_copy(SERVICE)
    assert (current.id, current.status) == (result["copy_id"], "verified")
    production = host_path(lab_env, PRODUCTION, lab_env["services"][SERVICE]["data_path"])
    assert tree_digest(copy_data(lab_env, MIRROR, result["copy_id"])) == tree_digest(production)
