"""A drill of hostile customer code: code planted in production's application folder (a wrapper
around the app's start command) comes to the mirror with replication and runs in `hotspare
drill`. It tries to write everywhere (/home, /root, /tmp, /var/tmp, /opt, /etc, /dev/shm, the
mirror's own service paths, a world-writable folder on the mirror), to read /etc/shadow, another
service's data on the mirror (directly and through /proc/1/root), the copy store, to undo the
mounts from a user namespace of its own, and leaves a detached process writing behind it.

What it saw it writes into its own /tmp, which exists only in the drill's view; the test reads
it from this machine through ``/proc/PID/root`` of the planted process while the drill waits for
it (the planted code waits, bounded, for a file the test then puts there), and reads the
process's identity and namespaces from the kernel (``/proc/PID/status``, ``/proc/PID/ns``), not
from the code's own report. Afterwards nothing it wrote exists anywhere on the mirror.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flows.replicate import replicate_service
from hotspare.cli import main
from hotspare.inventory import copies, locks

from lab_helpers import host_path, lab_fleet_changed, poll, ssh

pytestmark = pytest.mark.lab

SERVICE, OTHER = "app1", "app2"
PRODUCTION, MIRROR = "prod-east", "mirror-west"
APP = "/srv/app1/app"
SECRET = "app2-secret-" + secrets.token_hex(6)

WRAPPER = """#!/bin/sh
# planted: runs the probe before the real start
if [ "$1" = start ]; then {app}/probe || exit 1; fi
exec {app}/ctl.real "$@"
"""

PROBE = r'''#!/usr/bin/python3
"""Planted probe: tries everything, reports into its own /tmp, waits for the test's go."""
import json, os, subprocess, time

TOKEN = {token!r}
report = {{"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
          "pid": os.getpid(), "writes": {{}}, "reads": {{}}}}
for folder in {write_folders!r}:
    path = os.path.join(folder, TOKEN)
    try:
        with open(path, "w") as handle:
            handle.write("planted\n")
        report["writes"][path] = "written"
    except OSError as error:
        report["writes"][path] = type(error).__name__
for path in {read_paths!r}:
    try:
        if os.path.isdir(path):
            report["reads"][path] = "listed: " + " ".join(sorted(os.listdir(path)))
        else:
            with open(path, "rb") as handle:
                report["reads"][path] = "read: " + handle.read(4096).decode("utf-8", "replace")
    except OSError as error:
        report["reads"][path] = type(error).__name__
# Root of a user namespace of its own: try to take the masks off another service's data.
undo = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                       "umount -l /srv/app2/data; umount -l /srv; cat /srv/app2/data/secret.txt"],
                      capture_output=True, text=True, timeout=20)
report["undo_mounts"] = {{"exit": undo.returncode, "out": undo.stdout, "err": undo.stderr}}
# System V IPC objects outlive their process: a shared memory segment and a message queue.
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
key = int(TOKEN[-8:], 16) & 0x7FFFFFFF
report["ipc"] = {{"shm": libc.shmget(key, 4096, 0o1000 | 0o666), "msg": libc.msgget(key, 0o1000 | 0o666)}}
# A detached process that keeps writing after the drill.
subprocess.Popen(["sh", "-c", "while :; do echo late > /tmp/" + TOKEN + "-late; sleep 0.2; done", TOKEN],
                 start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)
with open("/tmp/report-" + TOKEN + ".tmp", "w") as handle:
    json.dump(report, handle)
os.replace("/tmp/report-" + TOKEN + ".tmp", "/tmp/report-" + TOKEN + ".json")
deadline = time.monotonic() + 90
while time.monotonic() < deadline and not os.path.exists("/tmp/go-" + TOKEN):
    time.sleep(0.05)
'''


def machine_folders(lab_env: dict) -> dict[str, Path]:
    """Where each folder the probe writes to lives on this machine (lab hosts have their own
    /srv, /etc, /home, /root, /tmp, /var/tmp and /dev/shm; /opt is this machine's)."""
    private = {
        path: host_path(lab_env, MIRROR, path)
        for path in (
            "/home",
            "/etc",
            "/srv",
            "/srv/app1/run",
            "/srv/app1/data",
            "/srv/hotspare",
            "/root",
            "/tmp",
            "/var/tmp",
            "/dev/shm",
        )
    }
    return {**private, "/opt": Path("/opt")}


def names_under(folder: Path, token: str, depth: int = 3) -> list[str]:
    """Paths under ``folder`` (``depth`` levels) whose name holds ``token``."""
    found, level = [], [folder]
    for _ in range(depth):
        following = []
        for current in level:
            try:
                entries = list(os.scandir(current))
            except OSError:
                continue
            for entry in entries:
                if token in entry.name:
                    found.append(entry.path)
                if entry.is_dir(follow_symlinks=False):
                    following.append(entry.path)
        level = following
    return found


def listing(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


@pytest.fixture
def planted(fleet, lab, lab_env):
    """The probe planted in production's application folder and replicated; the other service's
    secret data on the mirror; a world-writable folder on the mirror. All undone afterwards."""
    token = "hsplant" + secrets.token_hex(4)
    app = host_path(lab_env, PRODUCTION, APP)
    open_folder = Path("/opt") / f"hsdrill-open-{secrets.token_hex(4)}"  # its name must not hold the token
    other_data = host_path(lab_env, MIRROR, "/srv/app2/data")
    other_created = not other_data.exists()
    write_folders = [
        "/home",
        "/root",
        "/tmp",
        "/var/tmp",
        "/opt",
        "/etc",
        "/dev/shm",
        "/srv",
        "/srv/app1/run",
        "/srv/app1/data",
        str(open_folder),
    ]
    read_paths = [
        "/etc/shadow",
        "/etc/gshadow",
        "/srv/app2/data/secret.txt",
        "/proc/1/root/srv/app2/data/secret.txt",
        "/srv/hotspare",
        "/srv/hotspare/app1/copies",
        "/root",
        "/home",
    ]
    (app / "ctl").rename(app / "ctl.real")
    try:
        (app / "ctl").write_text(WRAPPER.format(app=APP))
        (app / "probe").write_text(PROBE.format(token=token, write_folders=write_folders, read_paths=read_paths))
        for name in ("ctl", "probe"):
            (app / name).chmod(0o755)
        open_folder.mkdir(mode=0o777)
        open_folder.chmod(0o1777)
        other_data.mkdir(parents=True, exist_ok=True)
        (other_data / "secret.txt").write_text(SECRET + "\n")
        (other_data / "secret.txt").chmod(0o644)
        poll(lambda: locks.holder_of(SERVICE) is None, 60, "app1's lock to be free")
        assert replicate_service(SERVICE)["outcome"] == "ok"
        yield {"token": token, "open_folder": open_folder, "write_folders": write_folders}
    finally:
        (app / "ctl").unlink(missing_ok=True)
        (app / "probe").unlink(missing_ok=True)
        (app / "ctl.real").rename(app / "ctl")
        shutil.rmtree(open_folder, ignore_errors=True)
        if other_created:
            shutil.rmtree(host_path(lab_env, MIRROR, "/srv/app2"), ignore_errors=True)
        else:
            (other_data / "secret.txt").unlink(missing_ok=True)
        poll(lambda: locks.holder_of(SERVICE) is None, 60, "app1's lock to be free")
        assert replicate_service(SERVICE)["outcome"] == "ok"  # the newest copy is the clean app again


def mirror_netns(lab_env: dict) -> Path:
    """The mirror's own /run/netns (drills make their namespaces there), seen from here."""
    return host_path(lab_env, MIRROR, "/run/netns")


def drill_namespace(lab_env: dict, present: set[str]) -> str | None:
    folder = mirror_netns(lab_env)  # made by the drill's first `ip netns add` on a fresh mirror
    if not folder.is_dir():
        return None
    names = {path.name for path in folder.iterdir() if path.name.startswith(f"hsdrill-{SERVICE}-")}
    return next(iter(names - present), None)


def probe_process(lab_env: dict, netns: str, token: str) -> int | None:
    """The planted process in the drill's bubble that has written its report (seen from here)."""
    result = ssh(lab_env, MIRROR, "ip", "netns", "pids", netns)
    for pid in result.stdout.split():
        if Path(f"/proc/{pid}/root/tmp/report-{token}.json").exists():
            return int(pid)
    return None


def kernel_view(pid: int) -> dict:
    """What the kernel says about a process: its IDs, privileges and namespaces."""
    status = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line)
    return {
        "uids": status["Uid"].split(),
        "gids": status["Gid"].split(),
        "groups": status.get("Groups", "").split(),
        "no_new_privs": status["NoNewPrivs"].strip(),
        "capabilities": status["CapEff"].strip(),
        "user_namespace": os.readlink(f"/proc/{pid}/ns/user"),
        "mount_namespace": os.readlink(f"/proc/{pid}/ns/mnt"),
    }


def test_planted_code_runs_contained_and_leaves_nothing(planted, lab_env, prefect_api):
    from prefect.settings import PREFECT_API_URL

    token = planted["token"]
    folders = machine_folders(lab_env)
    mirror_private_before = {path: listing(folders[path]) for path in ("/home", "/etc")}
    mirror_shadow = host_path(lab_env, MIRROR, "/etc/shadow").read_text()
    present = {path.name for path in mirror_netns(lab_env).iterdir()} if mirror_netns(lab_env).is_dir() else set()
    environment = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    process = subprocess.Popen(
        [sys.executable, "-m", "hotspare.cli", "drill", SERVICE, "--json"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        netns = poll(lambda: drill_namespace(lab_env, present), 120, "the drill's bubble")
        pid = poll(lambda: probe_process(lab_env, netns, token), 120, "the planted code's report")
        seen = kernel_view(pid)
        report = json.loads(Path(f"/proc/{pid}/root/tmp/report-{token}.json").read_text())
        Path(f"/proc/{pid}/root/tmp/go-{token}").write_text("go\n")  # into the view's own /tmp
        output, errors = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()  # the drill process this test started
            process.wait(timeout=30)
    assert process.returncode == 0, errors[-3000:]
    result = json.loads(output)

    # It ran as the service's user, in a user namespace of its own, without privileges.
    assert seen["uids"] == ["2001"] * 4 and seen["gids"] == ["2001"] * 4 and seen["groups"] in ([], ["2001"])
    assert seen["no_new_privs"] == "1" and int(seen["capabilities"], 16) == 0
    assert seen["user_namespace"] != os.readlink("/proc/self/ns/user")
    assert seen["mount_namespace"] != os.readlink("/proc/self/ns/mnt")
    assert (report["uid"], report["euid"], report["gid"]) == (2001, 2001, 2001)
    assert result["containment"]["run_as"] == "app1-web" and result["containment"]["uid"] == 2001

    # Writes: where the user may write they succeeded (in the drill's memory), elsewhere refused.
    writes = report["writes"]
    for folder in ("/tmp", "/var/tmp", "/dev/shm", "/srv/app1/run", str(planted["open_folder"])):
        assert writes[f"{folder}/{token}"] == "written", (folder, writes)
    for folder in ("/home", "/root", "/opt", "/etc", "/srv"):
        assert writes[f"{folder}/{token}"] == "PermissionError", (folder, writes)

    # Reads: no password hash, no other service's data, no copy store, no way around the mounts.
    reads = report["reads"]
    assert reads["/etc/shadow"] == "PermissionError" and reads["/etc/gshadow"] == "PermissionError"
    assert reads["/srv/app2/data/secret.txt"] == "FileNotFoundError"
    assert reads["/proc/1/root/srv/app2/data/secret.txt"] == "PermissionError"
    assert reads["/srv/hotspare"] == "listed: " and reads["/srv/hotspare/app1/copies"] == "FileNotFoundError"
    assert reads["/root"] == "listed: " and reads["/home"].startswith("listed: ")
    assert SECRET not in json.dumps(report) and mirror_shadow.splitlines()[0] not in json.dumps(report)
    assert SECRET not in report["undo_mounts"]["out"]

    # The drill proved its cleanup, and nothing the code wrote exists anywhere on the mirror.
    assert result["outcome"] == "ok" and result["cleanup_proven"] is True
    poll(
        lambda: (
            not [
                line
                for line in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout.splitlines()
                if token in line
            ]
        ),
        10,
        "the planted detached process to be gone",
    )
    for folder in planted["write_folders"]:
        real = folders.get(folder, Path(folder))
        assert not (real / token).exists() and not (real / f"{token}-late").exists(), folder
    for folder in sorted(set(folders.values()) | {planted["open_folder"]}):
        assert names_under(folder, token) == [], folder
    assert list(planted["open_folder"].iterdir()) == []
    # Its System V IPC objects were made (in the bubble's own IPC namespace) and died with it.
    assert report["ipc"]["shm"] >= 0 and report["ipc"]["msg"] >= 0
    key = str(int(token[-8:], 16) & 0x7FFFFFFF)
    for table in ("/proc/sysvipc/shm", "/proc/sysvipc/msg"):
        assert [line for line in Path(table).read_text().splitlines()[1:] if line.split()[0] == key] == [], table
    assert {path: listing(folders[path]) for path in ("/home", "/etc")} == mirror_private_before
    assert host_path(lab_env, MIRROR, "/etc/shadow").read_text() == mirror_shadow
    assert not list(Path("/var/lib/hotspare/drills").glob(f"{result['drill_id']}*"))


def test_a_drill_that_would_run_as_root_is_refused(fleet, lab, lab_env, tmp_path_factory, capsys):
    """No run_as, no declared account and no account of the copy in the UID range: refused, with
    the sentence that says what to set; nothing was made on the mirror."""

    def no_account(data: dict) -> None:
        for service in data["services"]:
            if service["name"] == SERVICE:
                service["accounts"].update(uid_min=50000, uid_max=50999)

    present = sorted(mirror_netns(lab_env).iterdir()) if mirror_netns(lab_env).is_dir() else []
    if copies.newest_verified(SERVICE, MIRROR) is None:
        assert replicate_service(SERVICE)["outcome"] == "ok"
    with lab_fleet_changed(lab_env, tmp_path_factory.mktemp("fleet"), no_account):
        assert main(["drill", SERVICE]) != 0
    message = capsys.readouterr().err
    assert "would run as root" in message and "run_as" in message and "Nothing was created" in message
    assert "Traceback" not in message
    assert (sorted(mirror_netns(lab_env).iterdir()) if mirror_netns(lab_env).is_dir() else []) == present


def test_failover_app_commands_run_as_run_as_on_the_mirror(fleet, lab, lab_env):
    """The wrapper a failover puts around the app's start/stop commands when the fleet names
    run_as, run through the same adapter on the mirror: the service's own IDs, no root, and a
    missing or root-valued account refused with a sentence."""
    from hotspare import access
    from hotspare.planning.containment import as_service_user

    if copies.newest_verified(SERVICE, MIRROR) is None:
        assert replicate_service(SERVICE)["outcome"] == "ok"  # brings app1's accounts to the mirror
    loaded = access.loaded_fleet()
    with access.connect(loaded, MIRROR) as mirror:
        as_user = mirror.run(as_service_user(["sh", "-c", 'echo "$(id -u) $(id -g) $(id -G) $HOME"'], "app1-web"))
        as_configured = mirror.run(as_service_user(["id", "-u"], None))
        missing = mirror.run(as_service_user(["id", "-u"], "nosuchuser"), check=False)
        root = mirror.run(as_service_user(["id", "-u"], "root"))
    assert as_user.text.split() == ["2001", "2001", "2001", "/home/app1-web"]
    assert as_configured.text.strip() == "0" and root.text.strip() == "0"  # as configured: the fleet chose root
    assert missing.exit_status == 126 and "no account nosuchuser on this host" in missing.stderr_tail


def test_a_declared_path_that_leads_out_of_the_copy_is_never_bound(tmp_path):
    """The copy is production's: a declared path in it that is a symbolic link to the mirror's
    own folders (here /etc) must not be bound into the view. Run with the real script and real
    mounts, in a mount namespace of this test's own (no lab needed)."""
    from hotspare.planning.containment import BIND_OWN

    workspace, view = tmp_path / "merged", tmp_path / "view"
    (workspace / "srv" / "app1" / "data").mkdir(parents=True)
    (workspace / "srv" / "app1" / "data" / "file.txt").write_text("the copy's\n")
    (workspace / "srv" / "app1" / "evil").symlink_to("/etc")
    (workspace / "srv" / "app1" / "hop").symlink_to("../" * 40 + "etc/passwd")  # up past / wherever tmp_path is
    view.mkdir()

    def bind(path: str) -> subprocess.CompletedProcess:
        script = 'sh -c "$0" sh "$@" && cat "$2/file.txt" 2>/dev/null; exit $?'
        return subprocess.run(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                script,
                BIND_OWN,
                f"{workspace}{path}",
                f"{view}{path}",
                str(workspace),
                path,
                str(view),
            ],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )

    good = bind("/srv/app1/data")
    assert good.returncode == 0 and good.stdout == "the copy's\n", good.stderr
    for path in ("/srv/app1/evil", "/srv/app1/hop"):
        refused = bind(path)
        assert refused.returncode == 4 and f"{path} in the copy leads outside the copy" in refused.stderr, refused
    assert not (view / "srv" / "app1" / "evil").exists() and not (view / "srv" / "app1" / "hop").exists()
