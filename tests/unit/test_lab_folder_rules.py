"""The lab's folder rules without a lab: which folders are hidden from hosts and which layouts are
refused (what a running host can see is tests/test_lab_isolation.py)."""

from __future__ import annotations

from pathlib import Path

from hotspare.lab.host_namespace import (
    hidden_folders,
    lab_folder_problem,
)


def test_hidden_folders_are_the_lab_and_an_orchestrator_home_of_its_own():
    lab = Path("/tmp/hs/lab")
    assert hidden_folders(lab, Path("/tmp/hs")) == ("/tmp/hs", "/tmp/hs/lab")
    assert hidden_folders(lab, Path("/var/lib/orchestrator")) == ("/tmp/hs/lab", "/var/lib/orchestrator")
    assert hidden_folders(lab, lab) == ("/tmp/hs/lab",)
    assert hidden_folders(lab, lab / "inner") == ("/tmp/hs/lab",)
    # A home that is a system folder, above one, or above hotspare's own folders on hosts stays.
    for home in ("/", "/root", "/tmp", "/var", "/var/lib", "/var/lib/hotspare", "/opt/hotspare"):
        assert hidden_folders(lab, Path(home)) == ("/tmp/hs/lab",), home


def test_a_lab_folder_where_hosts_have_their_own_is_refused():
    for folder in ("/srv/lab", "/etc/lab", "/home/lab", "/run/lab", "/dev/shm/lab"):
        problem = lab_folder_problem(Path(folder))
        assert problem is not None and folder in problem and "--dir" in problem
    assert lab_folder_problem(Path("/")) == "the lab folder cannot be /"
    for folder in ("/tmp/hs/lab", "/root/.hotspare/lab", "/var/lib/hotspare/lab", "/var/tmp/lab"):
        assert lab_folder_problem(Path(folder)) is None
