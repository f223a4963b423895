"""The readiness command against the lab: its exit code and where it points (the judgement
itself, plain facts in and flags out, is tests/unit/test_readiness_rules.py)."""

from __future__ import annotations


def test_the_command_exits_9_when_not_ready_and_points_at_a_watched_drill(fleet, capsys):
    """The session's inventory has no drills: not ready. Scripts and CI see it in the exit code."""
    from hotspare.cli import main

    assert main(["readiness"]) == 9
    captured = capsys.readouterr()
    assert "Not ready:" in captured.out and "hotspare drill SERVICE --watched-by NAME" in captured.err
    assert main(["readiness", "--json"]) == 9
