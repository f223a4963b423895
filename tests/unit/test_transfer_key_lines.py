"""Scoped transfer keys without root: the authorized_keys line, and the install/remove command run
for real on a scratch file (the forced command's view, which needs root, is tests/test_transfer_keys.py)."""

from __future__ import annotations

import os
import subprocess
from datetime import datetime, timezone

import pytest

from hotspare.keys import generate_ed25519
from hotspare.planning import transfer_keys as keys

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
PATHS = ["/srv/app1/data", "/etc/passwd"]


def make_key(service="app1", tag="replicate-app1-1", now=NOW):
    _, public = generate_ed25519("transfer")
    return keys.transfer_key_line(public, service=service, tag=tag, source_address="10.211.71.12", paths=PATHS, now=now)


def test_line_is_restricted_sourced_expiring_and_forced():
    key = make_key()
    options, key_type, _, comment = key.line.split(" ", 1)[0], *key.line.split()[-3:]
    assert options.startswith("restrict,")
    assert 'from="10.211.71.12"' in options
    assert 'expiry-time="20261130121500Z"' in options  # 15 minutes: enough to log in, no more
    assert f'command="{keys.VIEW_PATH} app1 /srv/app1/data /etc/passwd"' in key.line
    assert key_type == "ssh-ed25519"
    assert comment == f"hotspare-transfer:app1:replicate-app1-1:{key.expires_epoch}"
    assert key.expires_epoch == int(NOW.timestamp()) + 15 * 60


@pytest.mark.parametrize(
    "bad", ['/srv/a"b', "/srv/a b", "/srv/a\\b", "/srv/a'b", "srv/a", "/srv/../etc", "/srv/a/", "//srv", "/srv//a", "/srv/./a"]
)
def test_words_that_could_escape_the_forced_command_are_refused(bad):
    _, public = generate_ed25519("transfer")
    with pytest.raises(ValueError, match="cannot (put|serve)"):
        keys.transfer_key_line(public, service="app1", tag="t", source_address="10.0.0.1", paths=[bad], now=NOW)


def run_keys_script(argv: list[str], tmp_path, keys_file=None) -> subprocess.CompletedProcess:
    """The install/remove command with scratch paths in place of production's real ones."""
    scratch = {
        keys.TRANSFER_KEYS_FILE: keys_file or tmp_path / "ssh" / "hotspare_transfer_keys",
        keys.VIEW_PATH: tmp_path / "lib" / "view",
        keys.CONFIG_PATH: tmp_path / "lib" / "rsyncd.conf",
        keys.VIEW_MOUNT: tmp_path / "view",
    }
    argv = [str(scratch[word]) if word in scratch else word for word in argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def test_install_keeps_other_lines_and_replaces_a_dead_runs_line(tmp_path):
    file = tmp_path / "ssh" / "hotspare_transfer_keys"
    file.parent.mkdir()
    file.write_text("ssh-ed25519 AAAAoperator operator@desk\n")
    now = int(NOW.timestamp())
    dead = make_key(tag="dead-run")
    other = make_key(service="app2", tag="other-service")
    expired = make_key(service="app3", tag="expired", now=datetime(2026, 11, 30, 10, 0, tzinfo=timezone.utc))
    for key in (dead, other, expired):
        assert run_keys_script(keys.install_key_argv(key, now - 60), tmp_path).returncode == 0
    fresh = make_key(tag="fresh")
    assert run_keys_script(keys.install_key_argv(fresh, now), tmp_path).returncode == 0

    lines = file.read_text().splitlines()
    assert lines[0] == "ssh-ed25519 AAAAoperator operator@desk"
    assert {line["tag"] for line in keys.key_lines(file.read_text())} == {"other-service", "fresh"}
    assert oct(file.stat().st_mode & 0o777) == "0o600"
    view = tmp_path / "lib" / "view"
    assert view.read_text() == keys.VIEW_SCRIPT and os.access(view, os.X_OK)
    assert (tmp_path / "lib" / "rsyncd.conf").read_text() == keys.RSYNCD_CONFIG
    assert (tmp_path / "view").is_dir()

    assert run_keys_script(keys.remove_key_argv("app1", "fresh", now), tmp_path).returncode == 0
    assert [line["tag"] for line in keys.key_lines(file.read_text())] == ["other-service"]
    assert file.read_text().splitlines()[0] == "ssh-ed25519 AAAAoperator operator@desk"


# ---------------------------------------------------------------------------------------
# The forced command for real: the view script and rsync's daemon behind a real rsync client.
# The client's -e program stands in for sshd: whatever the client asks to run, the key's
# forced command runs instead (sshd puts the request in SSH_ORIGINAL_COMMAND, which nothing reads).


def test_hosts_sharing_one_install_folder_install_keys_at_the_same_time(tmp_path):
    """Two hosts with their own keys file (their own lock) but one /usr/local, as the lab's hosts:
    each writes the view script and the daemon's configuration through temporary names of its
    own, so neither moves the other's."""
    from concurrent.futures import ThreadPoolExecutor

    now = int(NOW.timestamp())

    def installs(host: str) -> list[int]:
        file = tmp_path / host / "hotspare_transfer_keys"
        file.parent.mkdir()
        return [
            run_keys_script(keys.install_key_argv(make_key(tag=f"{host}-{number}"), now), tmp_path, file).returncode
            for number in range(15)
        ]

    with ThreadPoolExecutor(2) as pool:
        statuses = [status for host in pool.map(installs, ["prod-east", "prod-west"]) for status in host]
    assert statuses == [0] * 30
    view = tmp_path / "lib" / "view"
    assert view.read_text() == keys.VIEW_SCRIPT and os.access(view, os.X_OK)
    assert (tmp_path / "lib" / "rsyncd.conf").read_text() == keys.RSYNCD_CONFIG
    assert not list(view.parent.glob("*.new*"))
