"""The checksum comparison of named files: the real program on real files, then the pure judge."""

from __future__ import annotations

import os
import subprocess

from hotspare.planning.file_digests import compare, digest_argv, nul_separated, parse_digests


def run_program(prefix: str, paths: list[str]):
    """The program as a host runs it (this machine's python3, arguments as the SSH adapter passes them)."""
    result = subprocess.run(digest_argv(prefix), input=nul_separated(paths), capture_output=True, timeout=30, check=True)
    return parse_digests(result.stdout.decode())


def test_both_sides_agree_on_equal_files_and_name_every_difference(tmp_path):
    production, copy = tmp_path / "production", tmp_path / "copy"
    names = [
        "/same",
        "/content",
        "/mode",
        "/gone-from-copy",
        "/gone-from-production",
        "/odd name\nwith newline",
        "/folder",
        "/pipe",
        "/link",
    ]
    for root in (production, copy):
        root.mkdir()
        (root / "same").write_bytes(b"x" * 5000)
        (root / "content").write_bytes(b"original")
        (root / "mode").write_bytes(b"m")
        (root / "odd name\nwith newline").write_bytes(b"odd")
        (root / "folder").mkdir()
        os.mkfifo(root / "pipe")  # must not hang the program
        (root / "link").symlink_to(root / "same")  # a link where a file was listed is not followed
    (copy / "content").write_bytes(b"0riginal")  # same size: only a checksum tells
    (production / "gone-from-copy").write_bytes(b"g")
    os.chmod(copy / "mode", 0o600)
    os.chmod(production / "mode", 0o644)
    for name in ("same", "content", "mode", "odd name\nwith newline"):  # equal mtimes, as rsync -a leaves them
        stamp = (production / name).stat()
        os.utime(copy / name, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    ours, theirs = run_program(str(production), names), run_program(str(copy), names)
    assert ours["/same"].sha256 == theirs["/same"].sha256 and len(ours["/same"].sha256) == 64
    assert ours["/gone-from-production"].error == "vanished" and ours["/pipe"].error == "not a regular file"

    result = compare(names, ours, theirs)
    assert sorted(result.itemized) == [("content", "/content"), ("metadata", "/mode"), ("missing", "/gone-from-copy")]
    assert result.vanished == {"/gone-from-production"}
    assert result.unreadable == {"/folder", "/pipe", "/link"}  # never a silent pass
    assert set(result.production_mtimes) == {"/same", "/content", "/mode", "/gone-from-copy", "/odd name\nwith newline"}


def test_a_file_production_did_not_answer_for_is_unreadable_not_equal():
    ours = parse_digests('{"path": "/a", "sha256": "1", "mode": 33188, "uid": 0, "gid": 0, "size": 1, "mtime": 5.0}\nnoise\n')
    theirs = parse_digests(
        '{"path": "/a", "sha256": "1", "mode": 33188, "uid": 0, "gid": 0, "size": 1, "mtime": 5.0}\n'
        '{"path": "/b", "error": "Permission denied"}\n'
    )
    result = compare(["/a", "/b", "/c"], ours, theirs)
    assert result.itemized == () and result.unreadable == {"/b", "/c"}
    assert compare(["/a"], ours, parse_digests('{"path": "/a", "error": "Input/output error"}')).itemized == (
        ("unreadable", "/a"),
    )


def test_answers_of_the_wrong_shape_count_as_unread():
    """A compromised production may answer anything: a value of the wrong type is no answer."""
    odd = parse_digests(
        '{"path": "/a", "sha256": 5, "mode": 33188, "uid": 0, "gid": 0, "size": 1, "mtime": 5.0}\n'
        '{"path": "/b", "sha256": "1", "mode": "rw", "uid": 0, "gid": 0, "size": 1, "mtime": 5.0}\n'
        '{"path": ["/c"], "sha256": "1"}\n[1, 2]\n'
    )
    assert odd == {}
    assert compare(["/a", "/b"], odd, odd).unreadable == {"/a", "/b"}
