"""Which copies are pruned and what the RPO state is: pure functions of copy ids and ages."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from hotspare.planning import replication as plan

NOW = datetime(2026, 11, 25, 13, 0, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


# ---------------------------------------------------------------------------------------
# Retention and RPO

IDS = ["20261120T000000Z", "20261121T000000Z", "20261122T000000Z", "20261123T000000Z", "20261124T000000Z"]


def test_copies_to_prune_keeps_the_newest():
    assert plan.copies_to_prune(list(reversed(IDS)), 3, set()) == IDS[:2]


def test_copies_to_prune_never_prunes_a_protected_copy_even_an_old_one():
    doomed = plan.copies_to_prune(IDS, 3, {IDS[0]})
    assert IDS[0] not in doomed
    assert doomed == IDS[1:3]  # the protected copy counts towards the ones kept


def test_attempts_never_verified_take_no_place_among_the_copies_kept():
    # two verified copies, then three runs refused at the space bound (never verified)
    rows = [(IDS[0], True), (IDS[1], True), (IDS[2], False), (IDS[3], False), (IDS[4], False)]
    assert plan.copies_to_prune_of(rows, 2, {IDS[1]}) == []  # before the transfer: the attempts stay
    promoted = [*rows, ("20261125T000000Z", True)]
    # the new copy promoted: the previous verified copy stays (two kept), the oldest and the attempts go
    assert plan.copies_to_prune_of(promoted, 2, {"20261125T000000Z"}, "20261125T000000Z") == [IDS[0], *IDS[2:]]
    assert plan.copies_to_prune_of(promoted, 1, {"20261125T000000Z"}, "20261125T000000Z") == IDS


def test_copies_to_prune_nothing_when_under_the_limit():
    assert plan.copies_to_prune(IDS[:2], 3, set()) == []
    assert plan.copies_to_prune([], 3, {"whatever"}) == []


@pytest.mark.parametrize(
    ("age_hours", "expected"),
    [(0, "ok"), (17.9, "ok"), (18, "ok"), (18.01, "at risk"), (24, "at risk"), (24.01, "violated"), (100, "violated")],
)
def test_rpo_state_boundaries(age_hours, expected):
    assert plan.rpo_state(NOW - timedelta(hours=age_hours), NOW, 24) == expected


def test_rpo_state_without_copy_is_violated():
    assert plan.rpo_state(None, NOW, 24) == "violated"
