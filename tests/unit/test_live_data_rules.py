"""Live data rules without root: files kept aside that differ, escaping what could forge a line,
the per-run backup folder (planting device nodes and setuid files is tests/test_live_data.py)."""

from __future__ import annotations

import json
import os

import pytest
from test_live_data import run

from hotspare.planning import live_data


def test_kept_aside_files_that_differ_are_listed(tmp_path):
    live, kept = tmp_path / "live", tmp_path / "replaced/srv/app1/data"
    live.mkdir()
    kept.mkdir(parents=True)
    (live / "same.txt").write_text("same")
    (kept / "same.txt").write_text("same")
    os.utime(kept / "same.txt", ns=(os.stat(live / "same.txt").st_mtime_ns,) * 2)
    (kept / "late-write.txt").write_text("only on the returning production")
    (live / "changed.txt").write_text("copy")
    (kept / "changed.txt").write_text("late change")
    report = run(live_data.neutralise_stdin([], [str(live)], [], kept=[(str(kept), str(live))]))
    assert report.kept_count == 2
    assert {os.path.basename(item.path): item.why for item in report.kept} == {
        "late-write.txt": "absent from the copy that went live",
        "changed.txt": "other content (size or modification time)",
    }
    assert any("late-write.txt" in line for line in report.markdown())


def test_printable_escapes_what_could_forge_a_line():
    assert live_data.printable("a\nb\\c\x1b`") == "a\\x0ab\\c\\x1b\\x60"
    assert live_data.printable(os.fsdecode(b"x\xff")) == "x\\xff"
    assert json.loads(live_data.neutralise_stdin([("/a", "/a")], ["/a"], [{"path": "/a", "allow": ["fifos"]}]))["roots"] == [
        ["/a", "/a", True]
    ]


def test_backup_folder_is_per_run_and_refuses_a_path():
    assert (
        live_data.backup_folder("/srv/hotspare/app1", "app1-1", "20261206T100000Z")
        == "/srv/hotspare/app1/replaced/app1-1-20261206T100000Z"
    )
    with pytest.raises(ValueError):
        live_data.backup_folder("/srv/hotspare/app1", "../x", "tag")
