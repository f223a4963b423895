"""The tree comparison's two programs (``planning/tree_comparison.py``) run by this machine's Python
on real folders: production's lister piped into the mirror's comparer, as the lab runs them over
SSH. Hostile answers are fed to the comparer as a compromised production would send them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hotspare.planning import tree_comparison as tree_plan
from hotspare.planning.verification_scope import PassState, answer_differences, scope_record


def production_folder(tmp_path: Path) -> Path:
    data = tmp_path / "production" / "srv" / "app" / "data"
    (data / "uploads").mkdir(parents=True)
    for number in range(6):
        (data / f"file{number}").write_text(f"content {number}\n")
    (data / "uploads" / "new\nline name").write_text("content 6\n")  # the same size as the others
    (data / "cache.sock").write_text("excluded\n")
    return data


def copy_of(tmp_path: Path, data: Path) -> tuple[Path, Path]:
    """The mirror's copy tree: production's absolute path below it, every byte and mtime kept."""
    tree = tmp_path / "mirror" / "tree"
    target = tree / str(data).lstrip("/")
    target.parent.mkdir(parents=True)
    subprocess.run(["cp", "-a", str(data), str(target)], check=True)
    return tree, target


def listing(request: tree_plan.Request) -> bytes:
    ran = subprocess.run(
        tree_plan.production_argv(), input=tree_plan.production_header(request), capture_output=True, timeout=60, check=True
    )
    return ran.stdout


def compare(request: tree_plan.Request, tree: Path, stream: bytes) -> subprocess.CompletedProcess:
    return subprocess.run(
        tree_plan.mirror_argv(),
        input=tree_plan.mirror_header(request, str(tree)) + stream,
        capture_output=True,
        timeout=60,
        check=False,
    )


def answer_of(request: tree_plan.Request, tree: Path) -> tree_plan.Answer:
    ran = compare(request, tree, listing(request))
    assert ran.returncode == 0, ran.stderr
    return tree_plan.parse_answer(ran.stdout.decode())


def flip_keeping_mtime(path: Path) -> None:
    before = path.stat()
    content = bytearray(path.read_bytes())
    content[0] ^= 1
    path.write_bytes(bytes(content))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_an_equal_copy_answers_no_difference_and_counts_every_file(tmp_path):
    data = production_folder(tmp_path)
    tree, _ = copy_of(tmp_path, data)
    answer = answer_of(tree_plan.Request((str(data),), ("*.sock",)), tree)
    assert answer.differences == () and answer.files == 7 and not answer.truncated
    assert answer.bytes == sum(path.stat().st_size for path in data.rglob("*") if path.is_file() and path.suffix != ".sock")


def test_listing_differences_and_changed_files_are_found_and_nothing_else_is_sent(tmp_path):
    data = production_folder(tmp_path)
    tree, copy = copy_of(tmp_path, data)
    (copy / "file1").unlink()  # missing from the copy
    (copy / "planted").write_text("not on production\n")  # extra in the copy
    (copy / "file2").write_text("longer content than production's\n")  # size differs
    flip_keeping_mtime(copy / "file3")  # silent damage, not itemized: not seen this run
    flip_keeping_mtime(copy / "file4")  # silent damage in a file the copy step itemized: found by checksum
    flip_keeping_mtime(copy / "uploads" / "new\nline name")
    request = tree_plan.Request((str(data),), itemized=(str(data / "file4"), str(data / "uploads" / "new\nline name")))
    answer = answer_of(request, tree)
    found = {(difference.kind, difference.path) for difference in answer.differences}
    assert found == {
        ("missing", str(data / "file1")),
        ("extra", str(copy / "planted")[len(str(tree)) :]),
        ("content", str(data / "file2")),
        ("content", str(data / "file4")),
        ("content", str(data / "uploads" / "new\nline name")),
    }
    assert answer.hashed_files == 2 and answer.slice_files == 0


def test_the_rolling_slice_covers_every_file_within_its_runs_and_resumes_at_the_cursor(tmp_path):
    data = production_folder(tmp_path)
    tree, copy = copy_of(tmp_path, data)
    flip_keeping_mtime(copy / "uploads" / "new\nline name")  # the last file in walking order
    state, seen = PassState(), []
    for runs in (3, 2, 1):
        request = tree_plan.Request((str(data),), ("*.sock",), cursor=state.cursor, runs=runs)
        answer = answer_of(request, tree)
        record = scope_record(answer, state, False, runs, 1000.0)
        seen.append((answer.slice_files, answer.complete, [d.path for d in answer.differences]))
        state = PassState(record["next_cursor"], record["next_started_at"], record["next_files_done"])
    assert [files for files, _, _ in seen] == [3, 2, 2]  # 7 files: a third, then half of the rest, then the rest
    assert [complete for _, complete, _ in seen] == [False, False, True]
    assert seen[2][2] == [str(data / "uploads" / "new\nline name")] and seen[0][2] == seen[1][2] == []
    assert record["pass_complete"] and record["pass_files"] == 7


def test_a_file_production_could_not_read_is_unreadable_and_one_that_vanished_is_a_change(tmp_path):
    data = production_folder(tmp_path)
    tree, copy = copy_of(tmp_path, data)
    stat = (copy / "file0").stat()
    stream = b"L\x00%s\x0010\x00%d\x00X\x00c\x00Permission denied\x00L\x00%s\x0010\x00%d\x00X\x00c\x00vanished\x00E\x00" % (
        str(data / "file0").encode(),
        stat.st_mtime_ns,
        str(data / "file1").encode(),
        stat.st_mtime_ns,
    )
    request = tree_plan.Request((str(data),), itemized=(str(data / "file0"), str(data / "file1")))
    ran = compare(request, tree, stream)
    assert ran.returncode == 0, ran.stderr
    itemized, mtimes, unreadable = answer_differences(tree_plan.parse_answer(ran.stdout.decode()))
    assert unreadable == {str(data / "file0")}
    assert ("missing", str(data / "file1")) in itemized and str(data / "file1") not in mtimes  # gone: production's change


HOSTILE = {
    "garbage": b"\x00\xffnot a record\x00",
    "no end mark": b"L\x00/srv/app/data/file0\x001\x001\x00",
    "a name outside the service": b"L\x00/etc/shadow\x001\x001\x00E\x00",
    "a name climbing out": b"L\x00/srv/app/data/../../../etc/shadow\x001\x001\x00E\x00",
    "names out of order": b"L\x00/srv/app/data/b\x001\x001\x00L\x00/srv/app/data/a\x001\x001\x00E\x00",
    "a huge name": b"L\x00/srv/app/data/" + b"x" * 100_000 + b"\x001\x001\x00E\x00",
    "a size that is no number": b"L\x00/srv/app/data/a\x00-1\x001\x00E\x00",
    "a checksum of the wrong shape": b"L\x00/srv/app/data/a\x001\x001\x00D\x00c\x00zz\x001\x001\x001\x001\x001\x00E\x00",
    "a checksum without a file": b"D\x00c\x00" + b"0" * 64 + b"\x001\x001\x001\x001\x001\x00E\x00",
    "records after the end": b"E\x00L\x00/srv/app/data/a\x001\x001\x00",
    "too many records": b"".join(b"L\x00/srv/app/data/f%07d\x001\x001\x00" % number for number in range(200)) + b"E\x00",
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_answer_is_refused_with_one_line_and_reports_nothing(tmp_path, case):
    tree = tmp_path / "tree"
    tree.mkdir()
    request = tree_plan.Request(("/srv/app/data",), max_records=100)
    ran = compare(request, tree, HOSTILE[case])
    assert ran.returncode == tree_plan.MALFORMED
    with pytest.raises(tree_plan.AnswerError):  # no summary: nothing of it can be taken for an answer
        tree_plan.parse_answer(ran.stdout.decode())
    message = ran.stderr.decode()
    assert message.startswith("production's answer is malformed") and message.count("\n") == 1


def test_a_changed_file_listed_without_its_checksum_is_refused(tmp_path):
    data = production_folder(tmp_path)
    tree, _ = copy_of(tmp_path, data)
    stream = listing(tree_plan.Request((str(data),)))  # production leaves out the checksums asked for
    ran = compare(tree_plan.Request((str(data),), itemized=(str(data / "file2"),)), tree, stream)
    assert ran.returncode == tree_plan.MALFORMED and b"without its checksum" in ran.stderr


def test_a_made_up_name_through_a_link_in_the_copy_is_never_read(tmp_path):
    """Production names a file below a link the copy holds (the copy keeps production's links):
    the mirror must not follow it to its own files and report whether they match."""
    data = production_folder(tmp_path)
    tree, copy = copy_of(tmp_path, data)
    secret = tmp_path / "mirror-secret"
    secret.mkdir()
    (secret / "key").write_text("the mirror's own secret\n")
    (copy / "link").symlink_to(secret)
    import hashlib

    sha = hashlib.sha256(b"the mirror's own secret\n").hexdigest().encode()
    path = str(data / "link" / "key").encode()
    stat = (copy / "file0").stat()
    stream = b"L\x00%s\x0024\x00%d\x00D\x00c\x00%s\x00%d\x00%d\x00%d\x0024\x00%d\x00E\x00" % (
        path,
        stat.st_mtime_ns,
        sha,
        0o100644,
        os.getuid(),
        os.getgid(),
        stat.st_mtime_ns,
    )
    ran = compare(tree_plan.Request((str(data),), itemized=(path.decode(),)), tree, stream)
    assert ran.returncode == 0, ran.stderr
    answer = tree_plan.parse_answer(ran.stdout.decode())
    judged = {d.path: d.kind for d in answer.differences}
    assert judged[path.decode()] in ("missing", "unreadable-copy")  # never "equal", never "content"
    assert answer.hashed_files == 0


def test_a_root_with_a_source_is_read_there_and_listed_under_its_own_name(tmp_path):
    """A shipped root is listed from production's snapshot of the copy, not from the live tree:
    a file the live tree dropped but the snapshot holds is no difference; one the copy holds
    that the snapshot lacks is extra, even when the live tree lacks it too."""
    data = production_folder(tmp_path)
    tree, copy = copy_of(tmp_path, data)
    snapshot = tmp_path / "snapshot"
    subprocess.run(["cp", "-a", str(data), str(snapshot)], check=True)
    (data / "file1").unlink()  # the live tree moved on; the snapshot is what was sent
    (copy / "planted").write_text("kept by a stream that left out a deletion\n")
    request = tree_plan.Request((str(data),), ("*.sock",), sources=((str(data), str(snapshot)),))
    answer = answer_of(request, tree)
    assert {(difference.kind, difference.path) for difference in answer.differences} == {("extra", f"{data}/planted")}
    assert answer.files == 7


def test_odd_names_are_listed_in_the_same_order_on_both_hosts_and_compared(tmp_path):
    """``find | sed | sort`` must give both hosts the order the mirror checks: components one by
    one (``a/z`` before ``a-b``, although ``-`` sorts below ``/``), whatever bytes a name holds
    (the two the order's code escapes, a newline, invalid UTF-8, find's own ``%`` and ``\\``)."""
    data = tmp_path.joinpath("production", "srv", "odd%s\\root")
    names = [b"a-b", b"a.txt", b"a b", b"we\x01ird", b"we\x02ird", b"\x01", b"\x02\x01", b"new\nline", b"\xff\xfe", b"%s%p\\0"]
    (data / "a").mkdir(parents=True)
    (data / "a" / "z").write_text("inside a folder whose name is a prefix of its siblings'\n")
    for number, name in enumerate(names):
        with open(os.path.join(bytes(data), name), "wb") as file:
            file.write(b"content %d\n" % number)
    old = os.path.join(bytes(data), b"before 1970")
    with open(old, "wb") as file:
        file.write(b"an old file\n")
    os.utime(old, ns=(0, -315_619_199_500_000_000))
    tree, copy = copy_of(tmp_path, data)
    listed = [os.fsencode(data / "a" / "z"), *(os.path.join(bytes(data), name) for name in names), old]
    request = tree_plan.Request((str(data),), runs=1)  # everything in the slice: every file hashed on both hosts
    answer = answer_of(request, tree)
    assert answer.differences == () and answer.files == len(listed) and answer.hashed_files == len(listed)
    flip_keeping_mtime(Path(os.fsdecode(os.path.join(bytes(copy), b"we\x02ird"))))
    with open(os.path.join(bytes(copy), b"planted\x01\xff"), "wb") as file:
        file.write(b"not on production\n")
    found = {(difference.kind, difference.path) for difference in answer_of(request, tree).differences}
    assert found == {
        ("content", os.fsdecode(os.path.join(bytes(data), b"we\x02ird"))),
        ("extra", os.fsdecode(os.path.join(bytes(data), b"planted\x01\xff"))),
    }


def test_an_excluded_folder_is_left_out_with_everything_in_it_on_both_hosts(tmp_path):
    data = production_folder(tmp_path)
    (data / "cache" / "deep").mkdir(parents=True)
    (data / "cache" / "deep" / "entry").write_text("rebuilt by the application\n")
    tree, copy = copy_of(tmp_path, data)
    (copy / "cache" / "deep" / "entry").write_text("different in the copy, and no matter\n")
    (copy / "cache" / "only-in-the-copy").write_text("no matter either\n")
    answer = answer_of(tree_plan.Request((str(data),), ("*.sock", "cache"), runs=1), tree)
    assert answer.differences == () and answer.files == 7 and answer.hashed_files == 7


def test_a_root_that_is_a_file_is_compared(tmp_path):
    data = production_folder(tmp_path)
    single = data / "file0"
    tree, copy = copy_of(tmp_path, data)
    assert answer_of(tree_plan.Request((str(single),), runs=1), tree).files == 1
    flip_keeping_mtime(copy / "file0")
    answer = answer_of(tree_plan.Request((str(single),), runs=1), tree)
    assert [(difference.kind, difference.path) for difference in answer.differences] == [("content", str(single))]


def test_a_host_that_cannot_list_its_side_says_so_instead_of_answering(tmp_path):
    """Without sort on its PATH the mirror exits UNLISTED with one line, never an empty listing
    (which would call every file of production missing, or pass an empty tree)."""
    data = production_folder(tmp_path)
    tree, _ = copy_of(tmp_path, data)
    request = tree_plan.Request((str(data),))
    stream = listing(request)
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("find", "sed"):
        (tools / tool).symlink_to(subprocess.run(["which", tool], capture_output=True, text=True, check=True).stdout.strip())
    ran = subprocess.run(
        [sys.executable, *tree_plan.mirror_argv()[1:]],
        input=tree_plan.mirror_header(request, str(tree)) + stream,
        capture_output=True,
        timeout=60,
        check=False,
        env={"PATH": str(tools)},
    )
    assert ran.returncode == tree_plan.UNLISTED and ran.stderr.decode().count("\n") == 1, ran.stderr
    assert ran.stdout == b""


def test_a_link_above_a_root_in_the_copy_never_lists_the_mirror_s_own_files(tmp_path):
    """A copy whose folder above a root is a link (to the mirror's own files): the mirror lists
    nothing there, so production's files are missing, and none of the mirror's names comes back."""
    data = production_folder(tmp_path)
    tree, copy = copy_of(tmp_path, data)
    secret = tmp_path / "mirror-own" / "data"
    secret.mkdir(parents=True)
    (secret / "mirror-secret-name").write_text("the mirror's own file\n")
    subprocess.run(["rm", "-rf", str(copy.parent)], check=True)
    copy.parent.symlink_to(secret.parent)
    answer = answer_of(tree_plan.Request((str(data),), ("*.sock",)), tree)
    assert {difference.kind for difference in answer.differences} == {"missing"} and answer.files == 7
    assert not any("mirror-secret-name" in difference.path for difference in answer.differences)
