"""Scoped transfer keys, without the lab but with root: the key's forced command (the view, in a
mount namespace of its own, and rsync's daemon) run for real behind a real rsync client, with what
a key holder could ask for. The key line and its install command are
tests/unit/test_transfer_key_lines.py."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hotspare.planning import transfer_keys as keys

CANARY = "canary-7f3a9c-not-the-services"


@pytest.fixture
def production(tmp_path):
    """A scratch production: the service's data (with links that point out of it), a declared
    file, and canary files beside them that are not the service's."""
    if os.geteuid() != 0:
        pytest.skip("the view mounts in a mount namespace of its own: needs root")
    root = tmp_path / "production"
    data = root / "srv" / "app1" / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a").write_text("the service's own data\n")
    (data / "sub" / "b").write_text("deeper data\n")
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("app1:x:1001:1001::/srv/app1:/bin/sh\n")
    for secret in (root / "etc" / "secret", root / "srv" / "outside"):
        secret.write_text(CANARY + "\n")
        secret.chmod(0o600)
    (data / "to-root").symlink_to("/")
    (data / "up").symlink_to("../..")
    (data / "to-secret").symlink_to(root / "etc" / "secret")
    os.chown(root / "srv" / "app1", 33, 33)
    (root / "srv" / "app1").chmod(0o750)
    declared = [str(data), str(root / "etc" / "passwd"), str(data / "sub"), str(root / "srv" / "gone")]
    view, config, shell = tmp_path / "view", tmp_path / "rsyncd.conf", tmp_path / "sshd-forced-command"
    view.mkdir()
    script = tmp_path / "transfer-view"
    script.write_text(keys.VIEW_SCRIPT.replace(keys.VIEW_MOUNT, str(view)).replace(keys.CONFIG_PATH, str(config)))
    config.write_text(keys.RSYNCD_CONFIG.replace(keys.VIEW_MOUNT, str(view)))
    shell.write_text(f"#!/bin/sh\nexec {script} app1 {' '.join(declared)}\n")
    for program in (script, shell):
        program.chmod(0o755)
    return {"root": root, "data": data, "shell": shell, "view": view, "mirror": tmp_path / "mirror"}


def client(production, *words: str) -> subprocess.CompletedProcess:
    """rsync on the mirror with a key holder's choice of options and sources (``::PATH`` reads
    PATH from the transfer module)."""
    argv = ["rsync", "-aHAX", "--numeric-ids", "--relative", "-e", str(production["shell"])]
    argv += [f"root@production::{keys.MODULE}{word[2:]}" if word.startswith("::") else word for word in words]
    return subprocess.run([*argv, str(production["mirror"]) + "/"], capture_output=True, text=True, timeout=60, check=False)


def received(production) -> str:
    """Everything the mirror got: every file's and link's name and content."""
    found = []
    for path in sorted(production["mirror"].rglob("*")) if production["mirror"].exists() else []:
        found.append(str(path))
        if path.is_symlink():
            found.append(os.readlink(path))
        elif path.is_file():
            found.append(path.read_text(errors="replace"))
    return "\n".join(found)


def test_a_pull_lays_the_declared_paths_out_at_their_absolute_paths(production):
    data, root = production["data"], production["root"]
    result = client(production, f"::{data}", f"::{root}/etc/passwd")
    assert result.returncode == 0, result.stderr
    copy = production["mirror"] / str(root).lstrip("/")
    assert (copy / "srv/app1/data/a").read_text() == "the service's own data\n"
    assert (copy / "srv/app1/data/sub/b").read_text() == "deeper data\n"
    assert (copy / "etc/passwd").read_text().startswith("app1:")
    assert os.readlink(copy / "srv/app1/data/to-root") == "/"  # a link travels as a link
    parent = (copy / "srv/app1").stat()  # the folders on the way carry production's owner and mode
    assert (parent.st_uid, parent.st_mode & 0o777) == (33, 0o750)
    assert CANARY not in received(production) + result.stdout + result.stderr


def test_a_missing_declared_path_is_named_as_rsync_names_any_unreadable_file(production):
    from hotspare.planning.rsync_outcomes import classify_rsync

    gone = f"{production['root']}/srv/gone"
    result = client(production, f"::{production['data']}", f"::{gone}")
    outcome = classify_rsync(result.returncode, result.stderr)
    assert outcome.kind == "partial" and outcome.failed_paths == [gone], result.stderr


@pytest.mark.parametrize(
    "words",
    [
        ["::{root}/etc/secret"],
        ["::{root}/srv/outside"],
        ["::{root}/etc/"],
        ["::/"],
        ["::{data}/to-root{root}/etc/secret"],
        ["::{data}/up/outside"],
        ["::{data}/../../../etc/secret"],
        ["::{data}/to-secret", "-L"],
        ["::{data}/", "--copy-unsafe-links"],
        ["::{data}/", "--copy-dirlinks"],
        ["::{data}/", "--files-from=:{root}/etc/secret"],
        ["::{data}/", "--filter=dir-merge {root}/etc/secret"],
        ["::{data}/", "--filter=: /../../etc/secret"],
        ["::{data}/", "-M--files-from={root}/etc/secret"],
        ["::{data}/", "-M--include-from={root}/etc/secret"],
        ["::{data}/", "-M--exclude-from={root}/etc/secret"],
        ["::{data}/", "--iconv=utf8,latin1"],
        ["::{data}/", "-M--log-file={root}/etc/written"],
        ["::{data}/", "-M--log-file-format=%f"],
        ["::{data}/", "-M--write-batch={root}/etc/written"],
        ["::{data}/", "-M--temp-dir={root}/etc"],
        ["::{data}/", "-M--partial-dir={root}/etc"],
        ["::{data}/", "-M--backup-dir={root}/etc"],
        ["::{data}/", "-M--compare-dest={root}/etc"],
        ["::{data}/", "--remove-source-files"],
        ["::{data}/", "-M--delete"],
    ],
)
def test_nothing_but_the_declared_paths_can_be_read_and_nothing_written(production, words):
    root, data = production["root"], production["data"]
    before = sorted(str(path) for path in root.rglob("*"))
    result = client(production, *[word.format(root=root, data=data) for word in words])
    assert CANARY not in received(production) + result.stdout + result.stderr, result.stderr
    assert sorted(str(path) for path in root.rglob("*")) == before  # nothing written, nothing removed
    assert (data / "a").exists()


def test_the_view_goes_with_the_connection(production):
    result = client(production, f"::{production['data']}")
    assert result.returncode == 0, result.stderr
    assert str(production["view"]) not in Path("/proc/self/mountinfo").read_text()
    assert list(production["view"].iterdir()) == []
