"""Attacks on the account merge, run in the lab as an attacker who owns production.

A compromised production writes whatever it likes into its own /etc/passwd, /etc/group and
/etc/shadow. Only the service's own lines of those files travel (read by the orchestrator over
its own login): a second UID 0 account, a duplicate ``root`` with a UID in the service's range, a
GID 0 account, a ``sudo`` group in range and a changed hash of a system account must all stay
off the mirror, named in the run's details and warnings, while a legitimate new service account
is merged as before (the positive control). Root's own hash and any other account's never reach
the mirror at all: not its /etc/shadow, not the copy. On a mirror shared with another service, a
production that claims that service's account name changes nothing of it.
"""

from __future__ import annotations

import hashlib
import os

import pytest

from flows.replicate import replicate_service
from flows.verify import verify

from lab_helpers import host_path, ssh, wait_for

pytestmark = pytest.mark.lab

SERVICE = "app1"
ACCOUNT_FILES = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow")


def fake_hash(label: str) -> str:
    return f"$6${label}$" + hashlib.sha256(os.urandom(8)).hexdigest()


def lines_of(lab_env: dict, host: str, path: str) -> list[str]:
    return host_path(lab_env, host, path).read_text().splitlines()


def entry(lines: list[str], name: str) -> list[str]:
    return [line for line in lines if line.split(":", 1)[0] == name]


def append_on(lab_env: dict, host: str, path: str, text: str) -> None:
    """Append to a file on the host over SSH, as root there (the attacker) would."""
    done = ssh(lab_env, host, "sh", "-c", 'printf "%s" "$1" >> "$2"', "sh", text, path)
    assert done.returncode == 0, done.stderr


def test_compromised_production_cannot_plant_root_or_system_accounts_on_the_mirror(fleet, lab_env):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    service = lab_env["services"][SERVICE]
    production, mirror = service["production"], service["mirror"]
    assert replicate_service(SERVICE)["outcome"] == "ok"  # a baseline: the mirror is in sync
    saved = {path: host_path(lab_env, production, path).read_bytes() for path in ACCOUNT_FILES}
    saved_mirror = {path: host_path(lab_env, mirror, path).read_bytes() for path in ACCOUNT_FILES}
    root2_hash, root_hash, eve_hash, daemon_hash, legit_hash, real_root_hash, other_hash, stolen_hash = (
        fake_hash(label) for label in ("root2", "rootdup", "eve", "daemon", "legit", "root", "other", "stolen")
    )
    try:
        # A mirror shared with another service, whose account app2-web (UID 3001) lives there too.
        assert ssh(lab_env, mirror, "useradd", "-M", "-u", "3001", "-s", "/bin/sh", "app2-web").returncode == 0
        mirror_before = {path: lines_of(lab_env, mirror, path) for path in ACCOUNT_FILES}
        # Production's root and an account of its own outside the service's range get hashes
        # nobody else has: neither may reach the mirror in any form.
        assert ssh(lab_env, production, "usermod", "-p", real_root_hash, "root").returncode == 0
        assert ssh(lab_env, production, "useradd", "-M", "-u", "5001", "-s", "/bin/sh", "operator5").returncode == 0
        assert ssh(lab_env, production, "usermod", "-p", other_hash, "operator5").returncode == 0
        # The positive control: a legitimate new service account with its password hash.
        assert ssh(lab_env, production, "useradd", "-M", "-u", "2700", "-s", "/bin/sh", "app1-legit").returncode == 0
        assert ssh(lab_env, production, "usermod", "-p", legit_hash, "app1-legit").returncode == 0
        # The attack.
        append_on(
            lab_env,
            production,
            "/etc/passwd",
            "root2:x:0:0:backdoor:/root:/bin/bash\n"
            "root:x:2600:2600:root again:/root:/bin/bash\n"
            "eve:x:2601:0::/root:/bin/bash\n"
            "app2-web:x:2650:2650:the other service's name:/home/app2-web:/bin/sh\n",
        )
        append_on(
            lab_env,
            production,
            "/etc/shadow",
            f"root2:{root2_hash}:20000:0:99999:7:::\n"
            f"root:{root_hash}:20000:0:99999:7:::\n"
            f"eve:{eve_hash}:20000:0:99999:7:::\n"
            f"app2-web:{stolen_hash}:20000:0:99999:7:::\n",
        )
        append_on(lab_env, production, "/etc/group", "sudo:x:2602:app1-web\n")
        changed = ssh(lab_env, production, "usermod", "-p", daemon_hash, "daemon")
        assert changed.returncode == 0, changed.stderr
        assert daemon_hash in host_path(lab_env, production, "/etc/shadow").read_text()

        state = replicate_service(SERVICE, return_state=True)
        assert state.is_completed(), state.message
        result = state.result()

        passwd = lines_of(lab_env, mirror, "/etc/passwd")
        shadow = lines_of(lab_env, mirror, "/etc/shadow")
        group = lines_of(lab_env, mirror, "/etc/group")
        # Nothing of the attack reached the mirror ...
        assert entry(passwd, "root2") == [] and entry(passwd, "eve") == []
        assert entry(passwd, "root") == entry(mirror_before["/etc/passwd"], "root")
        assert [line for line in passwd if line.split(":")[2] == "0"] == entry(mirror_before["/etc/passwd"], "root")
        assert entry(shadow, "root") == entry(mirror_before["/etc/shadow"], "root")
        assert entry(shadow, "daemon") == entry(mirror_before["/etc/shadow"], "daemon")
        assert entry(group, "sudo") == entry(mirror_before["/etc/group"], "sudo")
        shadow_text = "\n".join(shadow)
        for planted in (root2_hash, root_hash, eve_hash, daemon_hash, real_root_hash, other_hash, stolen_hash):
            assert planted not in shadow_text
        # the other service's account on the shared mirror is exactly as it was
        for path in ACCOUNT_FILES:
            assert entry(lines_of(lab_env, mirror, path), "app2-web") == entry(mirror_before[path], "app2-web"), path
        # nothing of production's other accounts is anywhere on the mirror: not in the copy either
        # (the line production calls app2-web is in range, so the copy keeps it as the service's
        # own, and the merge refuses it against the mirror's real app2-web)
        found = ssh(
            lab_env,
            mirror,
            "grep",
            "-r",
            "-l",
            "-F",
            "-e",
            real_root_hash,
            "-e",
            other_hash,
            "-e",
            daemon_hash,
            "-e",
            root2_hash,
            "--",
            "/etc",
            "/srv/hotspare",
        )
        assert found.returncode == 1 and found.stdout == "", found.stdout
        copy_shadow = ssh(lab_env, mirror, "cat", f"/srv/hotspare/{SERVICE}/current/tree/etc/shadow")
        assert copy_shadow.returncode == 0
        assert {line.split(":", 1)[0] for line in copy_shadow.stdout.splitlines()} == {
            "app1-web",
            "app1-batch",
            "app1-legit",
            "app2-web",
        }
        # ... the legitimate account did ...
        assert any(line.startswith("app1-legit:x:2700:") for line in passwd)
        assert entry(shadow, "app1-legit")[0].split(":")[1] == "!" + legit_hash  # locked while production serves
        assert {"app1-web", "app1-batch", "app1-legit"} <= set(result["accounts"]["users"])
        # ... and every refused entry is named, in the returned details and as a run-log warning.
        refused = result["transfer"]["accounts"]["refused"] + result["accounts"]["refused"]
        for name in ("account root2", "account root (UID 2600)", "account eve", "group sudo", "account app2-web"):
            assert any(f"refused {name}" in sentence for sentence in refused), (name, refused)
        assert not any(planted in sentence for sentence in refused for planted in (root2_hash, root_hash, eve_hash, stolen_hash))
        with get_client(sync_client=True) as client:

            def warnings():
                logs = client.read_logs(
                    log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id]))
                )
                found = [log.message for log in logs if log.level >= 30 and "refused account root2" in log.message]
                return found or None

            assert wait_for("the refusal of root2 in the run log", warnings, seconds=30)
        # The mirror's accounts hold what the copy's accounts merge into: verification passes.
        assert verify([SERVICE])[SERVICE]["passed"]
    finally:
        for path, content in saved.items():
            host_path(lab_env, production, path).write_bytes(content)
        for path, content in saved_mirror.items():
            host_path(lab_env, mirror, path).write_bytes(content)
        assert replicate_service(SERVICE)["outcome"] == "ok"  # the mirror follows production again
    assert entry(lines_of(lab_env, mirror, "/etc/passwd"), "app1-legit") == []
