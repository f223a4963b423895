"""A hostile production against snapshot shipping and the copy path — in the lab.

The attacker is root on prod-east (app1's production). app3 shares prod-east's mirror,
mirror-west, and plays the other customer whose copies must stay out of reach (in the lab it
also shares app1's production; the attacks below use nothing of app3 that production holds).
Production's root controls its own logins: every command run there, the transfer's forced
commands included, goes through root's shell from production's ``/etc/passwd``. The attacks
swap that shell for one of their own (``root_shell``), which runs a hostile sender in place of
``transfer-send`` or answers the orchestrator as it likes; nothing shared with other hosts is
touched, and the mirror is only read.

Each test asserts that the boundary holds. Checked independently of the code under test:
subvolumes read with ``btrfs subvolume show`` on the mirror's filesystem from this machine,
copies hashed here, quota groups and free space read on the mirror.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_shipping_bound import group_bytes

from flows.replicate import replicate_service
from hotspare.inventory import copies
from hotspare.planning import snapshot_shipping as shipping
from hotspare.planning import space
from hotspare.planning.replication import copy_tree

from lab_helpers import host_path, lab_fleet_changed, ssh, tree_digest

pytestmark = pytest.mark.lab

SERVICE, OTHER = "app1", "app3"
MiB = 2**20
WRITER = Path(__file__).with_name("send_streams.py").read_text().split('if __name__ == "__main__":')[0]


def mirror(lab_env) -> str:
    return lab_env["services"][SERVICE]["mirror"]


def production(lab_env) -> str:
    return lab_env["services"][SERVICE]["production"]


def copy_data(lab_env, service: str, copy_id: str) -> Path:
    return host_path(lab_env, mirror(lab_env), copy_tree(service, copy_id) + lab_env["services"][service]["data_path"])


def subvolume(path: Path) -> dict | None:
    """``btrfs subvolume show`` as {field: value}, or None when ``path`` is no subvolume."""
    shown = subprocess.run(["btrfs", "subvolume", "show", str(path)], capture_output=True, text=True, check=False)
    if shown.returncode != 0:
        return None
    return {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in shown.stdout.splitlines()[1:])}


def read_only(path: Path) -> bool:
    shown = subprocess.run(["btrfs", "property", "get", "-ts", str(path), "ro"], capture_output=True, text=True, check=True)
    return shown.stdout.strip() == "ro=true"


def other_copy_state(lab_env) -> dict:
    """app3's current copy on the mirror as this machine reads it: id, subvolume, ro flag, digest."""
    row = copies.current_copy(OTHER)
    data = copy_data(lab_env, OTHER, row.id)
    shown = subvolume(data)
    return {
        "id": row.id,
        "uuid": shown and shown["UUID"],
        "read_only": bool(shown) and read_only(data),
        "digest": tree_digest(data) if data.is_dir() else None,
    }


def injector(extra: str) -> str:
    """Production's sender: its real ``btrfs send`` stream with the commands ``extra`` builds
    (Python with the stream writer's functions in scope, setting ``extra``) put before the
    stream's END, so the received subvolume keeps production's genuine UUID."""
    program = "\n".join([WRITER, extra, INJECT_TAIL])
    return f"""#!/bin/sh
cat > /tmp/hotspare-inject.py <<'HOSTILE_STREAM_WRITER'
{program}
HOSTILE_STREAM_WRITER
if [ "$3" = - ]; then btrfs send -q "$2"; else btrfs send -q -p "$3" "$2"; fi | /usr/bin/python3 /tmp/hotspare-inject.py "$@"
"""


INJECT_TAIL = """
stream = sys.stdin.buffer.read()
end = command(END)
assert stream.endswith(end), "no END command at the stream's end"
sys.stdout.buffer.write(stream[: -len(end)] + extra + end)
"""


SENDER_SHELL = r"""#!/bin/bash
# production's root shell: the mirror's stream login runs the hostile sender, the rest as usual
case "$2" in /usr/local/lib/hotspare/transfer-send\ *) set -- $2; shift; exec /bin/sh /root/.hostile-sender "$@";; esac
exec /bin/bash "$@"
"""


@contextmanager
def root_shell(lab_env, shell: str, sender: str | None = None):
    """Production's root shell replaced by ``shell`` (and ``/root/.hostile-sender`` written) for
    the logins that start inside the block; production's own ``/etc/passwd`` again afterwards."""
    passwd = host_path(lab_env, production(lab_env), "/etc/passwd")
    root = host_path(lab_env, production(lab_env), "/root")
    original = passwd.read_text()
    (root / ".attack-shell").write_text(shell)
    (root / ".attack-shell").chmod(0o755)
    if sender is not None:
        (root / ".hostile-sender").write_text(sender)
    lines = original.splitlines(keepends=True)
    index = next(number for number, line in enumerate(lines) if line.startswith("root:"))
    fields = lines[index].rstrip("\n").split(":")
    fields[6] = "/root/.attack-shell"
    lines[index] = ":".join(fields) + "\n"
    try:
        passwd.write_text("".join(lines))
        yield
    finally:
        passwd.write_text(original)


def hostile_sender(lab_env, sender: str):
    """Production answers the mirror's stream login with ``sender`` (argv: SERVICE SNAPSHOT PARENT)."""
    return root_shell(lab_env, SENDER_SHELL, sender)


@pytest.fixture(scope="module")
def shipping_lab(fleet, lab_env, tmp_path_factory):
    """Shipping asked for, app1 keeping one copy, bound to 128 MiB above what its area holds, app3 and
    app1 replicated once each."""

    def shipping_one_copy(data: dict) -> None:
        next(s for s in data["services"] if s["name"] == SERVICE)["copies_to_keep"] = 1
        data["replication"] = {**(data.get("replication") or {}), "copy_backend": shipping.SHIPPING_PREFERENCE}

    with lab_fleet_changed(lab_env, tmp_path_factory.mktemp("fleet"), shipping_one_copy):
        assert replicate_service(SERVICE)["outcome"] == "ok"
    assert ssh(lab_env, mirror(lab_env), "timeout", "60", "btrfs", "subvolume", "sync", "/srv").returncode == 0
    bound_mib = -(-group_bytes(lab_env, SERVICE) // MiB) + 128

    def change(data: dict) -> None:
        shipping_one_copy(data)
        next(s for s in data["services"] if s["name"] == SERVICE)["space_gib"] = bound_mib / 1024

    with lab_fleet_changed(lab_env, tmp_path_factory.mktemp("fleet"), change):
        assert replicate_service(OTHER)["outcome"] == "ok"
        assert replicate_service(SERVICE)["outcome"] == "ok"
        yield


def _attempt() -> str:
    """One replication of app1 under attack: its outcome or the refusal's message."""
    try:
        return str(replicate_service(SERVICE)["outcome"])
    except Exception as refused:  # the attack is expected to be refused; what matters is below
        return f"refused: {refused}"


# -- 1. a stream that plants a symbolic link in the received area, outside its own subvolume --
# receive's --chroot confines the paths a stream names to the area, but the area itself is the
# chroot: a SYMLINK command whose path is "../NAME" makes an entry in the area beside the
# received subvolume, and its target is any absolute path, read by whatever the mirror runs
# outside the chroot afterwards (``btrfs subvolume delete`` resolves a link with realpath).
# The link rides inside production's genuine stream (before its END), so the received UUID holds.
LINK_TO_OTHER = """
SYMLINK_, PATH_LINK_ = 8, 17
target = b"/srv/hotspare/app3/current/tree/srv/app3/data"
extra = command(SYMLINK_, attribute(PATH, b"../evil-link"), attribute(INO, struct.pack("<Q", 999998)), attribute(PATH_LINK_, target))
"""


def test_a_link_planted_in_the_received_area_never_reaches_another_services_copy(shipping_lab, lab_env):
    before = other_copy_state(lab_env)
    assert before["uuid"] and before["read_only"] and before["digest"], before
    current = copies.current_copy(SERVICE).id
    area = host_path(lab_env, mirror(lab_env), shipping.received_area(SERVICE))
    data = host_path(lab_env, production(lab_env), lab_env["services"][SERVICE]["data_path"])
    try:
        (data / "attack-1.txt").write_text("1\n")
        with hostile_sender(lab_env, injector(LINK_TO_OTHER)):
            outcome = _attempt()
        print("outcome:", outcome)
        print("area after the attack:", sorted(entry.name for entry in area.iterdir()))
        # the other customer's copy: still there, the same subvolume, read-only, the same bytes
        assert other_copy_state(lab_env) == before, outcome
        assert copies.current_copy(SERVICE).id == current or outcome == "ok"
        (data / "attack-1b.txt").write_text("1\n")
        later = _attempt()  # the next run, with the real sender, finds the link in its area
        print("later:", later, sorted(entry.name for entry in area.iterdir()))
        assert other_copy_state(lab_env) == before, later
    finally:
        (area / "evil-link").unlink(missing_ok=True)


# -- 4. a genuine stream with one more file in it: the received UUID is production's snapshot's --
# Production's root lets btrfs send its real snapshot and adds, before the stream's end, a file
# its snapshot never had. The received subvolume carries the genuine received UUID (the UUID
# chain holds) and becomes the next shipment's parent, so the file would live on in every later
# copy, whatever production holds by then. The copy must never be current with it.
BACKDOOR = """
MKFILE_, WRITE_, DATA_ = 3, 15, 19
extra = command(MKFILE_, attribute(PATH, b"zzzz-backdoor.php"), attribute(INO, struct.pack("<Q", 999999)))
extra += command(
    WRITE_,
    attribute(PATH, b"zzzz-backdoor.php"),
    attribute(FILE_OFFSET, struct.pack("<Q", 0)),
    attribute(DATA_, b"<?php system($_GET['c']); ?>\\n"),
)
"""


def production_snapshot_digest(lab_env, copy_id: str) -> dict:
    snapshot = shipping.production_snapshot(lab_env["services"][SERVICE]["data_path"], copy_id)
    return tree_digest(host_path(lab_env, production(lab_env), snapshot))


def test_a_file_added_to_a_genuine_stream_never_becomes_a_current_copy(shipping_lab, lab_env):
    data = host_path(lab_env, production(lab_env), lab_env["services"][SERVICE]["data_path"])
    (data / "attack-4.txt").write_text("4\n")
    with hostile_sender(lab_env, injector(BACKDOOR)):
        outcome = _attempt()
    print("outcome:", outcome)
    row = copies.current_copy(SERVICE)
    print("current copy:", row.id, row.status, row.verification and row.verification.get("checks"))
    in_copy = copy_data(lab_env, SERVICE, row.id)
    assert not (in_copy / "zzzz-backdoor.php").exists(), outcome
    # production, cleaned (the attacker gone, its snapshots kept), ships again: the copy follows it
    (data / "attack-4-after.txt").write_text("clean\n")
    later = _attempt()
    row = copies.current_copy(SERVICE)
    print("later:", later, row.id)
    assert tree_digest(copy_data(lab_env, SERVICE, row.id)) == tree_digest(data), later


# -- 5. the same added file in a tree the quarter-second slice cannot cover in one run --
# The shipped data's check compares a slice from the rolling cursor, not the listing: a file the
# stream added after the slice's end is not seen by this run. The copy must still never be current
# with a file production's snapshot does not hold. Found when the checks of shipped data were the
# UUID chain and the slice alone: with 6,000 files the slice hashed 224-757 of them, the copy was
# current with the file, and the next run (production cleaned, real sender) shipped from the
# tainted received subvolume and kept it. Shipped paths are now listed and compared every run.
def test_a_file_added_to_a_genuine_stream_of_a_big_tree_never_becomes_current(shipping_lab, lab_env):
    data = host_path(lab_env, production(lab_env), lab_env["services"][SERVICE]["data_path"])
    bulk = data / "bulk-5"
    bulk.mkdir(exist_ok=True)
    for number in range(6000):
        (bulk / f"file-{number:05}.bin").write_bytes(os.urandom(4096))
    try:
        assert replicate_service(SERVICE)["outcome"] == "ok"
        row = copies.current_copy(SERVICE)
        copies.update_copy(row.id, verification=row.verification | {"slice_cursor": ""})  # a new pass starts
        (data / "attack-5.txt").write_text("5\n")
        with hostile_sender(lab_env, injector(BACKDOOR)):
            outcome = _attempt()
        print("outcome:", outcome)
        row = copies.current_copy(SERVICE)
        planted = copy_data(lab_env, SERVICE, row.id) / "zzzz-backdoor.php"
        print("current copy:", row.id, "holds the added file:", planted.exists())
        checks = {check["check"]: check["detail"] for check in row.verification["checks"]}
        print("shipped data check:", checks.get("shipped data"))
        (data / "attack-5-after.txt").write_text("clean\n")  # production cleaned, its snapshots kept
        later = _attempt()
        again = copies.current_copy(SERVICE)
        kept = (copy_data(lab_env, SERVICE, again.id) / "zzzz-backdoor.php").exists()
        print("later:", later, again.id, "holds it:", kept)
    finally:
        for blob in bulk.glob("*"):
            blob.unlink()
        bulk.rmdir()
        replicate_service(SERVICE, force=True)  # production shrank on purpose
    assert not planted.exists(), f"copy {row.id} is current and holds a file production never had ({outcome})"
    assert not kept, f"the next copy {again.id}, from production cleaned, still holds it ({later})"


# -- 6. the parent's name in the area turned into a link, for the next run's clean-up --
# Inside its genuine stream production renames the parent received subvolume (same folder: a
# rename the kernel allows on a read-only subvolume) to an old copy's name, and puts a link with
# the parent's name in its place, pointing at the other service's current copy. Whatever the
# mirror later runs on that name (``btrfs subvolume show``, ``delete``) must not follow it.
PARENT_TO_LINK = """
import os
SYMLINK_, RENAME_, PATH_TO_, PATH_LINK_ = 8, 9, 16, 17
parent = os.path.basename(sys.argv[3]).encode()
assert sys.argv[3] != "-", "a full send: no parent to replace"
target = b"/srv/hotspare/app3/current/tree/srv/app3/data"
extra = command(RENAME_, attribute(PATH, b"../" + parent), attribute(PATH_TO_, b"../data@app1-20000101T000000Z"))
extra += command(SYMLINK_, attribute(PATH, b"../" + parent), attribute(INO, struct.pack("<Q", 999997)), attribute(PATH_LINK_, target))
"""


def _hostile_run_on_a_chain(lab_env, label: str, injection: str) -> tuple[str, Path, Path]:
    """A chain to attack (a file added on production and copied, so the next stream has a parent;
    force: an earlier test shrank production), another file added, then one run with the sender
    doing ``injection``: (its outcome, production's data path, the mirror's received area)."""
    data = host_path(lab_env, production(lab_env), lab_env["services"][SERVICE]["data_path"])
    (data / f"attack-{label}.txt").write_text(f"{label}\n")
    assert replicate_service(SERVICE, force=True)["outcome"] == "ok"
    (data / f"attack-{label}b.txt").write_text(f"{label}\n")
    with hostile_sender(lab_env, injector(injection)):
        outcome = _attempt()
    print("outcome:", outcome)
    return outcome, data, host_path(lab_env, mirror(lab_env), shipping.received_area(SERVICE))


def test_a_parent_replaced_by_a_link_never_leads_the_mirror_to_another_services_copy(shipping_lab, lab_env):
    before = other_copy_state(lab_env)
    assert before["uuid"] and before["read_only"] and before["digest"], before
    outcome, data, area = _hostile_run_on_a_chain(lab_env, "6", PARENT_TO_LINK)
    print("area after the attack:", sorted((entry.name, entry.is_symlink()) for entry in area.iterdir()))
    assert other_copy_state(lab_env) == before, outcome
    for number in range(2):  # the next runs, with the real sender, meet the link in their area
        (data / f"attack-6-{number}.txt").write_text("6\n")
        later = _attempt()
        print("later:", later, sorted((entry.name, entry.is_symlink()) for entry in area.iterdir()))
        assert other_copy_state(lab_env) == before, later


# -- 9. production answers the orchestrator with a flood --
# Production's root shell runs the orchestrator's first command there, then writes 400 MiB more
# on its standard output (one line, no newline). The orchestrator must refuse the answer without
# holding it: its peak memory stays near a plain run's.
FLOODING_SHELL = r"""#!/bin/bash
if [ -n "$SSH_ORIGINAL_COMMAND" ]; then exec /bin/bash "$@"; fi
if mkdir /root/.flooded 2>/dev/null; then /bin/bash "$@"; head -c 419430400 /dev/zero | tr '\0' x; exit 0; fi
exec /bin/bash "$@"
"""


def _replicate_measured(extra_env: dict | None = None) -> tuple[int, int, str]:
    """``hotspare replicate app1`` in a process of its own: (exit status, peak RSS in KiB read from
    its ``VmHWM`` while it runs, stderr's tail). Bounded: a run still going after 7 minutes is
    ended by its PID (exit -9). A run an earlier test ended that way holds the service's lock
    until it lapses (30 s): the run is started again until the lock is free."""
    import time

    deadline = time.monotonic() + 120
    while True:
        status, peak, error = _replicate_once(extra_env)
        if "is busy" not in error or time.monotonic() > deadline:
            return status, peak, error
        time.sleep(0.5)  # a poll within the deadline above


def _replicate_once(extra_env: dict | None) -> tuple[int, int, str]:
    import threading

    from prefect.settings import PREFECT_API_URL

    process = subprocess.Popen(
        [sys.executable, "-m", "hotspare.cli", "replicate", SERVICE],
        env={**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), **(extra_env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    peak = [0]

    def watch() -> None:
        status = Path(f"/proc/{process.pid}/status")
        while process.poll() is None:
            try:
                line = next(line for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
                peak[0] = max(peak[0], int(line.split()[1]))
            except (OSError, StopIteration, ValueError):
                pass
            time.sleep(0.05)

    import time

    timer = threading.Timer(420, process.kill)
    watcher = threading.Thread(target=watch, daemon=True)
    timer.start()
    watcher.start()
    try:
        error = process.stderr.read()
        process.wait()
    finally:
        timer.cancel()
    watcher.join(timeout=5)
    return process.returncode, peak[0], error.decode(errors="replace")[-1500:]


def test_a_flood_from_production_is_refused_in_bounded_memory(shipping_lab, lab_env):
    data = host_path(lab_env, production(lab_env), lab_env["services"][SERVICE]["data_path"])
    flooded_mark = host_path(lab_env, production(lab_env), "/root/.flooded")
    (data / "attack-9a.txt").write_text("9\n")
    plain = _replicate_measured()
    print("plain run:", plain[:2])
    assert plain[0] == 0, plain[2]
    flooded_mark.mkdir(exist_ok=True)
    flooded_mark.rmdir()
    (data / "attack-9b.txt").write_text("9\n")
    with root_shell(lab_env, FLOODING_SHELL):
        flooded = _replicate_measured()
    print("flooded run:", flooded)
    assert flooded_mark.is_dir(), "the flood was never sent"
    assert "Traceback" not in flooded[2], flooded[2]
    assert flooded[1] - plain[1] < 150 * 1024, f"peak {flooded[1]} KiB against {plain[1]} KiB for a plain run"


# -- 8. what the orchestrator hands production during a shipment --
# Production's root controls its own login: every command the orchestrator runs there goes through
# root's shell from production's /etc/passwd. A shell that records each command's arguments,
# environment and standard input, for one shipped replication, must have recorded no private key
# and no secret of the fleet (the lab's secrets file, the orchestrator's client key).
RECORDING_SHELL = r"""#!/bin/bash
if [ -n "$SSH_ORIGINAL_COMMAND" ]; then exec /bin/bash "$@"; fi
record=/root/.recorded/$(date +%s%N)-$$
printf '%s\n' "$@" > "$record.argv"
env > "$record.env"
exec /bin/bash "$@" < <(exec tee "$record.stdin" 2>/dev/null)
"""


def _secret_values(value) -> set[str]:
    if isinstance(value, dict):
        return set().union(*(_secret_values(item) for item in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_secret_values(item) for item in value)) if value else set()
    return {value} if isinstance(value, str) and len(value) >= 12 else set()


def test_a_shipment_hands_production_no_private_key_and_no_secret(shipping_lab, lab_env):
    import json

    recorded = host_path(lab_env, production(lab_env), "/root/.recorded")
    recorded.mkdir(exist_ok=True)
    (host_path(lab_env, production(lab_env), lab_env["services"][SERVICE]["data_path"]) / "attack-8.txt").write_text("8\n")
    with root_shell(lab_env, RECORDING_SHELL):
        # a process of its own: its logins to production start now, through the recording shell
        status, _, error = _replicate_measured()
    outcome = "ok" if status == 0 else error
    print("outcome:", outcome)
    records = sorted(recorded.iterdir())
    assert len([path for path in records if path.suffix == ".argv"]) >= 4, "the orchestrator's commands were not recorded"
    everything = b"".join(path.read_bytes() for path in records)
    print(f"{len(records)} records, {len(everything)} bytes")
    for path in records:
        if path.suffix == ".argv":
            print(path.name, path.read_text()[:300].replace("\n", " | "))
    secrets = _secret_values(json.loads(Path(lab_env["secrets_file"]).read_text()))
    secrets |= {os.environ["PREFECT_API_AUTH_STRING"]}
    client_key = Path(lab_env["ssh"]["key"]).read_text()
    secrets |= {line for line in client_key.splitlines() if len(line) >= 40}
    leaked = sorted(secret[:6] + "…" for secret in secrets if secret.encode() in everything)
    assert b"PRIVATE KEY" not in everything
    assert not leaked, f"production recorded {leaked}"
    assert outcome == "ok"


# -- 10. a stream refused as hostile: what it wrote must not be the next copy's parent --
# The stream adds a file to production's genuine snapshot and one entry beside it in the area:
# the copy is refused ("besides its snapshots"). The next run, with production's real sender,
# must not ship from the refused stream's subvolume: its copy holds what production holds. Found
# when only the stray entries were removed: the refused stream's received subvolume stayed in the
# area and was the next parent (now it goes too: ``SHIP_SCRIPT``).
BACKDOOR_AND_EXTRA = (
    BACKDOOR
    + """
MKDIR_ = 4
extra += command(MKDIR_, attribute(PATH, b"../stray"), attribute(INO, struct.pack("<Q", 999996)))
"""
)


def test_a_refused_streams_subvolume_is_never_the_next_parent(shipping_lab, lab_env):
    outcome, data, area = _hostile_run_on_a_chain(lab_env, "10", BACKDOOR_AND_EXTRA)
    assert outcome.startswith("refused") and "besides its snapshots" in outcome, outcome
    left = sorted(entry.name for entry in area.iterdir())
    print("area after the refusal:", left, [(area / name / "zzzz-backdoor.php").exists() for name in left])
    (data / "attack-10c.txt").write_text("10\n")
    later = _attempt()
    row = copies.current_copy(SERVICE)
    print("next run:", later, row.id)
    assert later == "ok", f"the run after the refusal failed: {later}"
    assert tree_digest(copy_data(lab_env, SERVICE, row.id)) == tree_digest(data)
