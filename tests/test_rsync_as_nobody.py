"""rsync run for real as nobody over a tree with an unreadable file: exit 23 is a partial transfer
that names the file (needs root to switch users; the classifier alone is tests/unit/test_rsync_outcomes.py)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from hotspare.planning.rsync_outcomes import classify_rsync


@pytest.fixture
def unreadable_tree():
    """A tree with one file its reader (nobody) may not open, and a source path that is gone
    (under /tmp itself: pytest's own temporary folders are closed to other users)."""
    import tempfile
    from pathlib import Path

    tmp_path = Path(tempfile.mkdtemp(prefix="hotspare-rsync-"))
    source = tmp_path / "src"
    (source / "data").mkdir(parents=True)
    (source / "data" / "fine.txt").write_text("fine")
    (source / "data" / "secret.db").write_text("secret")
    os.chmod(source / "data" / "secret.db", 0o600)
    tmp_path.chmod(0o755)
    source.chmod(0o755)
    (source / "data").chmod(0o755)
    target = tmp_path / "dst"
    target.mkdir()
    target.chmod(0o777)
    yield source, target
    shutil.rmtree(tmp_path)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root to run rsync as nobody")
def test_real_rsync_exit_23_is_partial_and_names_the_unreadable_file(unreadable_tree):
    source, target = unreadable_tree
    result = subprocess.run(
        [
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "rsync",
            "-a",
            "--relative",
            f"{source}/data",
            f"{source}/missing",
            f"{target}/",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    outcome = classify_rsync(result.returncode, result.stderr)
    assert result.returncode == 23
    assert outcome.kind == "partial"
    assert set(outcome.failed_paths) == {f"{source}/data/secret.db", f"{source}/missing"}
    assert (target / str(source).lstrip("/") / "data" / "fine.txt").read_text() == "fine"  # the rest arrived
