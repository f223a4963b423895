"""Scoped transfer keys, without the lab: the authorized_keys line, the install/remove command
run for real on a scratch file, and the transfer guard run for real with the commands a key
holder could send."""

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
    assert f'command="{keys.GUARD_PATH} app1 /srv/app1/data /etc/passwd"' in key.line
    assert key_type == "ssh-ed25519"
    assert comment == f"hotspare-transfer:app1:replicate-app1-1:{key.expires_epoch}"
    assert key.expires_epoch == int(NOW.timestamp()) + 15 * 60


@pytest.mark.parametrize("bad", ['/srv/a"b', "/srv/a b", "/srv/a\\b", "/srv/a'b"])
def test_words_that_could_escape_the_forced_command_are_refused(bad):
    _, public = generate_ed25519("transfer")
    with pytest.raises(ValueError, match="cannot put"):
        keys.transfer_key_line(public, service="app1", tag="t", source_address="10.0.0.1", paths=[bad], now=NOW)


def run_keys_script(argv: list[str], file, guard) -> subprocess.CompletedProcess:
    """The install/remove command with the scratch file and guard path in place of the real ones."""
    argv = list(argv)
    argv[argv.index(keys.TRANSFER_KEYS_FILE)] = str(file)
    argv[argv.index(keys.GUARD_PATH)] = str(guard)
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def test_install_keeps_other_lines_and_replaces_a_dead_runs_line(tmp_path):
    file, guard = tmp_path / "ssh" / "hotspare_transfer_keys", tmp_path / "lib" / "guard"
    file.parent.mkdir()
    file.write_text("ssh-ed25519 AAAAoperator operator@desk\n")
    now = int(NOW.timestamp())
    dead = make_key(tag="dead-run")
    other = make_key(service="app2", tag="other-service")
    expired = make_key(service="app3", tag="expired", now=datetime(2026, 11, 30, 10, 0, tzinfo=timezone.utc))
    for key in (dead, other, expired):
        assert run_keys_script(keys.install_key_argv(key, now - 60), file, guard).returncode == 0
    fresh = make_key(tag="fresh")
    assert run_keys_script(keys.install_key_argv(fresh, now), file, guard).returncode == 0

    lines = file.read_text().splitlines()
    assert lines[0] == "ssh-ed25519 AAAAoperator operator@desk"
    assert {line["tag"] for line in keys.key_lines(file.read_text())} == {"other-service", "fresh"}
    assert oct(file.stat().st_mode & 0o777) == "0o600"
    assert guard.read_text() == keys.GUARD_SCRIPT and os.access(guard, os.X_OK)

    assert run_keys_script(keys.remove_key_argv("app1", "fresh", now), file, guard).returncode == 0
    assert [line["tag"] for line in keys.key_lines(file.read_text())] == ["other-service"]
    assert file.read_text().splitlines()[0] == "ssh-ed25519 AAAAoperator operator@desk"


def guard(tmp_path, original_command: str) -> subprocess.CompletedProcess:
    script = tmp_path / "guard"
    script.write_text(keys.GUARD_SCRIPT)
    environment = {"PATH": os.environ["PATH"], "SSH_ORIGINAL_COMMAND": original_command}
    return subprocess.run(["python3", str(script), "app1", *PATHS], env=environment, capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL, check=False)


@pytest.mark.parametrize("command, reason", [
    ("sh -c id", "only a read"),
    ("rsync --server -logDtpre.iLsfxCIvu . /srv/app1/data", "only a read"),  # a write into production
    ("rsync --server --sender -logDtpre.iLsfxCIvu . /etc/shadow", "not a path of this service"),
    ("rsync --server --sender -logDtpre.iLsfxCIvu . /srv/app1/data/../../../etc/shadow", "not a path of this service"),
    ("rsync --server --sender -logDtpre.iLsfxCIvu . /srv/app1/database", "not a path of this service"),
    ("rsync --server --sender -logDtpre.iLsfxCIvu . srv/app1/data", "not a path of this service"),
    ("rsync --server --sender -LogDtpre.iLsfxCIvu . /srv/app1/data", "link following"),
    ("rsync --server --sender -logDtpre.iLsfxCIvu --copy-unsafe-links . /srv/app1/data", "link following"),
    ("rsync --server --sender -logDtpre.iLsfxCIvu .", "no path"),
    ("rsync --server --sender 'unbalanced", "unparsable"),
])
def test_guard_refuses_everything_but_a_read_of_the_services_paths(tmp_path, command, reason):
    result = guard(tmp_path, command)
    assert result.returncode == 1
    assert "refused" in result.stderr and reason in result.stderr


def test_guard_hands_a_read_of_a_declared_path_to_rrsync(tmp_path):
    """The capability string after ``e.`` (which contains an L) is not a link-following flag."""
    result = guard(tmp_path, "rsync --server --sender -logDtpre.iLsfxCIvu --numeric-ids . /srv/app1/data/file /etc/passwd")
    # rrsync started rsync's sender, which ends for want of a client on stdin
    assert "refused" not in result.stderr and "[sender=" in result.stderr, result.stderr
    assert result.returncode == 12


def test_guard_refuses_a_path_that_leaves_the_service_through_a_link(tmp_path):
    """A link to / inside the data (or matched by a wildcard) must not open the rest of the server."""
    data, outside = tmp_path / "data", tmp_path / "outside"
    data.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("not the service's")
    (data / "escape").symlink_to(outside)
    script = tmp_path / "guard"
    script.write_text(keys.GUARD_SCRIPT)
    for requested in (f"{data}/escape/secret", f"{data}/*/secret"):
        environment = {"PATH": os.environ["PATH"],
                       "SSH_ORIGINAL_COMMAND": f"rsync --server --sender -logDtpre.iLsfxCIvu . {requested}"}
        result = subprocess.run(["python3", str(script), "app1", str(data)], env=environment, capture_output=True,
                                text=True, timeout=30, stdin=subprocess.DEVNULL, check=False)
        assert result.returncode == 1 and "not a path of this service" in result.stderr, (requested, result.stderr)


def test_guard_lets_a_link_itself_be_read_since_rsync_sends_it_as_a_link(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "to-shadow").symlink_to("/etc/shadow")
    script = tmp_path / "guard"
    script.write_text(keys.GUARD_SCRIPT)
    environment = {"PATH": os.environ["PATH"],
                   "SSH_ORIGINAL_COMMAND": f"rsync --server --sender -logDtpre.iLsfxCIvu . {data}/to-shadow"}
    result = subprocess.run(["python3", str(script), "app1", str(data)], env=environment, capture_output=True,
                            text=True, timeout=30, stdin=subprocess.DEVNULL, check=False)
    assert "refused" not in result.stderr and "[sender=" in result.stderr, result.stderr


def test_guard_runs_by_its_own_interpreter_line_isolated_from_the_environment(tmp_path):
    """Installed, the guard is executed through its ``#!`` line (``-I -S``): it still hands the
    read to rrsync in the same interpreter, and a PYTHONPATH in the environment reaches neither."""
    script = tmp_path / "guard"
    script.write_text(keys.GUARD_SCRIPT)
    script.chmod(0o755)
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / "shlex.py").write_text("raise SystemExit('planted module imported')\n")
    environment = {"PATH": os.environ["PATH"], "PYTHONPATH": str(planted),
                   "SSH_ORIGINAL_COMMAND": "rsync --server --sender -logDtpre.iLsfxCIvu . /etc/passwd"}
    result = subprocess.run([str(script), "app1", *PATHS], env=environment, capture_output=True, text=True,
                            timeout=30, stdin=subprocess.DEVNULL, check=False)
    assert "planted" not in result.stderr and "[sender=" in result.stderr, result.stderr
    assert result.returncode == 12


def test_hosts_sharing_one_guard_install_keys_at_the_same_time(tmp_path):
    """Two hosts with their own keys file (their own lock) but one /usr/local, as the lab's hosts:
    each writes the guard through a temporary name of its own, so neither moves the other's."""
    from concurrent.futures import ThreadPoolExecutor

    guard = tmp_path / "lib" / "guard"
    now = int(NOW.timestamp())

    def installs(host: str) -> list[int]:
        file = tmp_path / host / "hotspare_transfer_keys"
        file.parent.mkdir()
        return [run_keys_script(keys.install_key_argv(make_key(tag=f"{host}-{number}"), now), file, guard).returncode
                for number in range(15)]

    with ThreadPoolExecutor(2) as pool:
        statuses = [status for host in pool.map(installs, ["prod-east", "prod-west"]) for status in host]
    assert statuses == [0] * 30
    assert guard.read_text() == keys.GUARD_SCRIPT and os.access(guard, os.X_OK)
    assert not list(guard.parent.glob("guard.new*"))
