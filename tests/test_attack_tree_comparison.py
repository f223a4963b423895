"""A compromised production answering the verification's tree comparison, in the real lab.

The verification pipes production's listing into the mirror's comparer over SSH
(``planning/tree_comparison.py``). Here production's lister is replaced, on the real production
host, by what an attacker there could run instead: garbage, an endless answer, names outside the
service. Each must end the replication with a one-line reason, leave the new copy unverified and
the previous verified copy current. Names with a newline, which production may legitimately hold,
are compared like any other.
"""

from __future__ import annotations

import time

import pytest
from test_replication import writable_copy
from test_verification_rolling import copy_damage_check, flip_keeping_mtime

from flows.replicate import replicate_service
from hotspare.inventory import copies
from hotspare.planning import tree_comparison as tree_plan
from hotspare.planning.replication import copy_tree

from lab_helpers import host_path

SERVICE = "app1"
pytestmark = pytest.mark.lab

HOSTILE = {
    # bytes without a single NUL: one endless field
    "garbage": ["sh", "-c", "cat >/dev/null; head -c 3000000 /dev/urandom | tr -d '\\000'"],
    # well-formed records without end, many more than the service has files
    "endless": [
        "python3",
        "-IS",
        "-c",
        "import sys\nsys.stdin.buffer.read()\nout = sys.stdout.buffer\nnumber = 0\nwhile True:\n"
        "    number += 1\n    out.write(b'L\\0/srv/app1/data/x%012d\\0' % number + b'1\\0' + b'1\\0')",
    ],
    # a name outside the service's paths: the mirror's /etc/shadow, as a changed file with a checksum
    "outside": [
        "python3",
        "-IS",
        "-c",
        "import sys\nsys.stdin.buffer.read()\nsys.stdout.buffer.write(b'L\\0/etc/shadow\\0' + b'1\\0' * 2 + b'E\\0')",
    ],
}


@pytest.mark.parametrize("answer", sorted(HOSTILE))
def test_a_hostile_answer_fails_the_replication_and_keeps_the_verified_copy(fleet, lab_env, monkeypatch, answer):
    assert replicate_service(SERVICE)["outcome"] == "ok"
    current = copies.current_copy(SERVICE).id
    production = lab_env["services"][SERVICE]["production"]
    changed = host_path(lab_env, production, lab_env["services"][SERVICE]["data_path"]) / "changed-by-attack-test"
    changed.write_text(f"changed {time.time_ns()}\n")  # something to copy: the new copy exists before the comparison
    monkeypatch.setattr(tree_plan, "production_argv", lambda: HOSTILE[answer])
    started = time.monotonic()
    with pytest.raises(Exception) as failure:
        replicate_service(SERVICE)
    assert time.monotonic() - started < 300
    message = str(failure.value)
    assert "is not verified" in message and "\n" not in message and "Traceback" not in message
    assert copies.current_copy(SERVICE).id == current
    newest = copies.copies_of(SERVICE)[0]
    assert newest.id != current and newest.status != "verified"
    monkeypatch.undo()
    assert replicate_service(SERVICE)["outcome"] == "ok"  # the genuine lister: the next run verifies


def test_names_with_a_newline_are_compared_and_damage_in_them_is_found(fleet, lab_env):
    production = lab_env["services"][SERVICE]["production"]
    data_path = lab_env["services"][SERVICE]["data_path"]
    odd = host_path(lab_env, production, data_path) / "uploads" / "line\nbreak.txt"
    odd.parent.mkdir(exist_ok=True)
    odd.write_text(f"a customer's file with a newline in its name {time.time_ns()}\n")
    assert replicate_service(SERVICE)["outcome"] == "ok"
    odd.write_text(f"changed again {time.time_ns()}\n")
    mirror = lab_env["services"][SERVICE]["mirror"]

    def damage(copy_id: str, itemized: list[str]) -> None:
        in_copy = host_path(lab_env, mirror, copy_tree(SERVICE, copy_id) + data_path) / "uploads" / "line\nbreak.txt"
        with writable_copy(in_copy.parent):
            flip_keeping_mtime(in_copy)

    outcome = copy_damage_check(damage)
    assert not outcome["passed"]
    assert any(f"{data_path}/uploads/line\nbreak.txt" in failure for failure in outcome["summary"]["failures"])
    assert replicate_service(SERVICE)["outcome"] == "ok"  # repaired by the next copy
    odd.unlink()
