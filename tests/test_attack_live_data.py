"""Hostile data never goes live, and activation never destroys a write — in the lab.

An attacker who owns production plants, in the service's own paths, a setuid-root binary, a
block device node with a loop device's numbers, a FIFO, a link to /etc/shadow, a relative link
climbing out of the service, a link whose name holds a newline, and a binary with file
capabilities. Replication copies them (the copy keeps them: forensics); the failover must make
none of them live as planted, the app must not serve the mirror's /etc/shadow, and the run log
and the failover's artifact name each one.

Then the other direction: files written on production after its last copy (a late write) are
still there when it returns. Failing back makes the copy live on it; whatever that replaces is
kept in the run's named folder and listed in the artifact.
"""

from __future__ import annotations

import os
import stat
import uuid

import pytest
from test_failover import SERVICE, address, protected, through_dns

from flows.failover import failover
from flows.replicate import replicate_service
from flows.reprotect import reprotect
from hotspare.inventory import copies

from lab_helpers import host_path, ssh

pytestmark = pytest.mark.lab

PRODUCTION, MIRROR = "prod-east", "mirror-west"
DATA, APP, CONFIG = "/srv/app1/data", "/srv/app1/app", "/etc/app1"
PLANTS = {  # name -> the kind the failover must neutralise
    f"{DATA}/suid-id": "setuid",
    f"{DATA}/disk": "devices",
    f"{DATA}/pipe": "fifos",
    f"{DATA}/shadow": "links_outside",
    f"{DATA}/escape": "links_outside",
    f"{DATA}/line\nbreak": "links_outside",
    f"{APP}/suid-tool": "setuid",
    f"{APP}/cap-tool": "capabilities",
    f"{APP}/passwd-link": "links_outside",
}


def plant(host: str, lab_env: dict) -> None:
    """The attack, as root on production, through its own shell."""
    script = (
        'printf "#!/bin/sh\\nid\\n" > "$1/suid-id" && chmod 4755 "$1/suid-id" && '
        'mknod -m 0666 "$1/disk" b 7 0 && mkfifo -m 0666 "$1/pipe" && '
        'ln -s /etc/shadow "$1/shadow" && ln -s ../../../etc/passwd "$1/escape" && '
        'ln -s /etc/shadow "$1/line\nbreak" && '
        'cp /usr/bin/id "$2/suid-tool" && chmod 4755 "$2/suid-tool" && '
        'cp /usr/bin/id "$2/cap-tool" && setcap cap_net_raw+ep "$2/cap-tool" && '
        'ln -s /etc/passwd "$2/passwd-link"'
    )
    done = ssh(lab_env, host, "sh", "-c", script, "sh", DATA, APP)
    assert done.returncode == 0, done.stderr


def remove_plants(lab_env: dict, *hosts: str) -> None:
    for host in hosts:
        for path in PLANTS:
            (host_path(lab_env, host, path)).unlink(missing_ok=True)


def artifact_text(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    newest = max(found, key=lambda artifact: artifact.created)
    return str(newest.data)


def escaped(path: str) -> str:
    return path.replace("\n", "\\x0a")


def test_hostile_data_planted_on_production_never_goes_live(protected, lab, lab_env):
    shadow = host_path(lab_env, PRODUCTION, "/etc/shadow")
    saved_shadow = shadow.read_bytes()
    root_hash = "$6$productionroot$" + uuid.uuid4().hex
    try:
        # production's root hash is one nobody else has: after replication and failover it is
        # nowhere on the mirror (only the service's accounts travel)
        assert ssh(lab_env, PRODUCTION, "usermod", "-p", root_hash, "root").returncode == 0
        plant(PRODUCTION, lab_env)
        assert replicate_service(SERVICE)["outcome"] == "ok"
        copy = copies.current_copy(SERVICE)
        # the point-in-time copy keeps the originals (forensics)
        in_copy = host_path(lab_env, MIRROR, f"/srv/hotspare/{SERVICE}/copies/{copy.id}/tree{DATA}")
        assert stat.S_ISBLK(os.lstat(in_copy / "disk").st_mode) and os.lstat(in_copy / "suid-id").st_mode & stat.S_ISUID
        lab.fail(PRODUCTION)

        result = failover(SERVICE, yes=True)

        assert result["outcome"] == "ok"
        live = {path: host_path(lab_env, MIRROR, path) for path in PLANTS}
        assert not live[f"{DATA}/disk"].exists() and not os.path.lexists(live[f"{DATA}/disk"])
        assert not os.path.lexists(live[f"{DATA}/pipe"])
        for path in (f"{DATA}/suid-id", f"{APP}/suid-tool"):
            assert not os.lstat(live[path]).st_mode & (stat.S_ISUID | stat.S_ISGID), path
        with pytest.raises(OSError):
            os.getxattr(live[f"{APP}/cap-tool"], "security.capability")
        for path in (f"{DATA}/shadow", f"{DATA}/escape", f"{DATA}/line\nbreak", f"{APP}/passwd-link"):
            assert not live[path].is_symlink() and live[path].read_bytes() == b"", path
        # the app cannot serve the mirror's own /etc/shadow (nor /etc/passwd)
        for name in ("shadow", "escape"):
            status, body, used = through_dns(lab_env, name)
            assert used == address(lab_env, "mirror") and b"root:" not in body, (name, status)
        # every one is named: in the result, in the run's artifact
        sentences = "\n".join(result["activation"]["live_data"]["neutralised"])
        artifact = artifact_text(f"failover-{SERVICE}")
        for path in PLANTS:
            assert escaped(path) in sentences, (path, sentences)
            assert escaped(path) in artifact, path
        assert "\nbreak" not in artifact  # a planted newline forges no line
        # the copy still holds the originals after the failover
        assert stat.S_ISBLK(os.lstat(in_copy / "disk").st_mode)
        found = ssh(lab_env, MIRROR, "grep", "-r", "-l", "-F", "-e", root_hash, "--", "/etc", "/srv/hotspare", "/srv/app1")
        assert found.returncode == 1 and found.stdout == "", found.stdout
    finally:
        shadow.write_bytes(saved_shadow)
        lab.heal(PRODUCTION)
        remove_plants(lab_env, PRODUCTION, MIRROR)


def test_failback_keeps_the_late_writes_of_the_returning_production(protected, lab, lab_env):
    late_data, late_config = f"{DATA}/late-write.txt", f"{CONFIG}/late-write.conf"
    try:
        assert replicate_service(SERVICE)["outcome"] == "ok"
        # written on production after its last copy: only it has them
        host_path(lab_env, PRODUCTION, late_data).write_text("a late order\n")
        host_path(lab_env, PRODUCTION, late_config).write_text("late = yes\n")
        lab.fail(PRODUCTION)
        assert failover(SERVICE, yes=True)["outcome"] == "ok"
        lab.heal(PRODUCTION)
        assert ssh(lab_env, PRODUCTION, "/srv/app1/app/ctl", "stop").returncode == 0
        assert reprotect(SERVICE, yes=True)["mirror"] == PRODUCTION

        back = failover(SERVICE, planned=True, yes=True)

        assert back["outcome"] == "ok"
        activation = back["activation"]
        # the config path is made live with rsync: its late write is in the run's named folder
        backup_dir = activation["backup_dir"]
        assert backup_dir and backup_dir.startswith(f"/srv/hotspare/{SERVICE}/replaced/")
        assert host_path(lab_env, PRODUCTION, backup_dir + late_config).read_text() == "late = yes\n"
        assert not host_path(lab_env, PRODUCTION, late_config).exists()  # the copy went live as it was
        # the data late write is kept too: in the same folder (rsync) or the tree kept aside (clone)
        kept_data = [line for line in activation["live_data"]["kept_aside"] if line.startswith(late_data + " ")]
        assert kept_data, activation["live_data"]["kept_aside"]
        kept_as = kept_data[0].split("(kept as ", 1)[1].split(":", 1)[0]
        assert host_path(lab_env, PRODUCTION, kept_as).read_text() == "a late order\n"
        # both are listed for the operator in the failback's artifact
        artifact = artifact_text(f"failover-{SERVICE}")
        assert late_config in artifact and late_data in artifact and "Kept aside" in artifact
    finally:
        for host in (PRODUCTION, MIRROR):
            for path in (late_data, late_config):
                host_path(lab_env, host, path).unlink(missing_ok=True)


def test_a_service_account_on_the_mirror_never_reaches_the_copies(protected, lab, lab_env):
    """Production's data lands in the mirror's store as it was (a setuid-root shell among it, kept
    for forensics); the service's account, which travels to the mirror and may log in there, must
    not reach it: the store and the service's folder in it are root's alone."""
    data = host_path(lab_env, PRODUCTION, lab_env["services"][SERVICE]["data_path"])
    planted = data / f"rootsh-{uuid.uuid4().hex[:8]}"
    planted.write_bytes(b"#!/bin/sh\nid\n")
    os.chmod(planted, 0o4755)
    try:
        assert replicate_service(SERVICE)["outcome"] == "ok"
        for folder in ("/srv/hotspare", f"/srv/hotspare/{SERVICE}"):
            mode = host_path(lab_env, MIRROR, folder).stat()
            assert (stat.S_IMODE(mode.st_mode), mode.st_uid) == (0o700, 0), folder
        probe = ssh(
            lab_env, MIRROR, "setpriv", "--reuid=2001", "--regid=2001", "--clear-groups", "--", "ls", f"/srv/hotspare/{SERVICE}"
        )
        assert probe.returncode != 0 and "Permission denied" in probe.stderr, probe
    finally:
        planted.unlink(missing_ok=True)
