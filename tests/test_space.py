"""Space per service on a shared host: a service filling the shared mirror never blocks another's
failover; a failover refuses before any change when its target has no room; a failure after the
swap is undone and said truthfully (``planning/space.py``, ``flows/failover.py``).

Lab: app1 and app3 share production (prod-east) and mirror (mirror-west). The mirror's /srv is
btrfs on loop devices; a test shrinks its free space with an fallocated file outside every
service's area (instant, and the sparse backing files hardly grow), removed afterwards.
"""

from __future__ import annotations

import re

import pytest
from test_failover import SERVICE, _failure_of, address, dns_answer, protected, reset_layout

from flows.failover import failover
from flows.replicate import replicate_service
from hotspare.inventory import copies
from hotspare.planning import space

from lab_helpers import host_path, lab_fleet_changed, ssh

MIRROR = "mirror-west"
FILLER = "/srv/space-test-filler"


# ---------------------------------------------------------------------------------------
# The planner (no lab)


# ---------------------------------------------------------------------------------------
# The lab


def free_bytes(lab_env: dict, host: str, path: str = "/srv") -> int:
    """Free bytes as of a committed transaction: btrfs counts an fallocated extent as used only once
    its delayed references run, so a reading taken just after ``fallocate`` can still be too high."""
    done = ssh(lab_env, host, "sh", "-c", 'btrfs filesystem sync "$1" && df -B1 --output=avail "$1"', "sh", path)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


def fill_until(lab_env: dict, host: str, free: int) -> int:
    """Leave about ``free`` bytes free on the host's /srv (never less); returns what is free."""
    for number in range(12):
        now = free_bytes(lab_env, host)
        if now <= free + 4 * space.MIB:
            return now
        # btrfs reserves whole chunks: take half the excess at a time, so it never overshoots
        ssh(lab_env, host, "fallocate", "-l", str(max((now - free) // 2, space.MIB)), f"{FILLER}.{number}")
    return free_bytes(lab_env, host)


@pytest.fixture
def app3_running(lab_env):
    """app3 runs again on the hosts it shares with app1 once the test is over (a fence that
    powers prod-east off stops every app there); ask for it before ``protected``, so it ends last."""
    yield
    for host in ("prod-east", "mirror-west"):
        assert ssh(lab_env, host, "/srv/app3/app/ctl", "start").returncode == 0


@pytest.fixture
def roomy_mirror(lab_env):
    """The filler files gone from the mirror before and after the test."""
    empty = ["sh", "-c", f"rm -f {FILLER}.* && btrfs filesystem sync /srv"]  # freed at the commit
    assert ssh(lab_env, MIRROR, *empty).returncode == 0
    yield
    assert ssh(lab_env, MIRROR, *empty).returncode == 0


def test_a_service_filling_the_shared_mirror_leaves_the_others_failover_working(
    app3_running, protected, roomy_mirror, lab, lab_env, tmp_path
):
    big = host_path(lab_env, "prod-east", "/srv/app3/data/bulk.bin")

    def small_bound(data):
        next(s for s in data["services"] if s["name"] == "app3")["space_gib"] = 0.0625  # 64 MiB

    try:
        with lab_fleet_changed(lab_env, tmp_path, small_bound):
            assert replicate_service("app3")["outcome"] == "ok"  # a small first copy: inside its bound
            # room for 130 MiB more: app3's 120 MiB would leave 10, too few for app1's activation
            free = fill_until(lab_env, MIRROR, 130 * space.MIB)
            assert 126 * space.MIB <= free <= 134 * space.MIB, f"the filler left {free} bytes free, not about 130 MiB"
            big.write_bytes(bytes(120 * space.MIB))
            with pytest.raises(Exception) as refused:
                replicate_service("app3")
            message = str(refused.value)
            assert "replication of app3 refused: its area on mirror-west would pass its bound of 64.0 MiB" in message
            assert "Disk quota exceeded" in message and "no other service's space was used" in message
            # the kernel stopped app3 at its bound: most of what was free is still free, for the others
            assert free_bytes(lab_env, MIRROR) > free - 80 * space.MIB
            assert replicate_service(SERVICE)["outcome"] == "ok"

            lab.fail("prod-east")
            result = failover(SERVICE, yes=True)
            assert result["outcome"] == "ok"
            assert dns_answer(lab_env) == [address(lab_env, "mirror")]
            assert copies.service_row(SERVICE).state == "failed-over"
    finally:
        big.unlink(missing_ok=True)


def test_a_failover_without_room_on_its_target_refuses_before_any_change(protected, roomy_mirror, lab_env):
    fill_until(lab_env, MIRROR, 8 * space.MIB)
    state = failover(SERVICE, yes=True, return_state=True)
    assert state.is_failed()
    message = str(_failure_of(state))
    assert re.search(
        r"failover of app1 to mirror-west refused before any change: /srv has [0-9.]+ MiB free and the "
        r"activation needs [0-9.]+ MiB",
        message,
    ), message
    assert "Free space on mirror-west" in message
    # nothing changed: not fenced (production still serves), DNS and the inventory as they were
    assert ssh(lab_env, "prod-east", "/srv/app1/app/ctl", "status").returncode == 0
    assert dns_answer(lab_env) == [address(lab_env, "production")]
    row = copies.service_row(SERVICE)
    assert (row.state, row.failover) == ("protected", None)
    assert not host_path(lab_env, MIRROR, "/srv/hotspare/app1/active-copy").exists()


def test_a_failure_after_the_swap_is_undone_and_says_where_the_service_serves(
    app3_running, protected, roomy_mirror, lab, lab_env, tmp_path
):
    before = host_path(lab_env, MIRROR, "/srv/app1/data/written-on-the-mirror.txt")
    before.write_text("stood here before the failover")

    def journal_at_start(data):  # the app writes a 96 MiB journal when it starts
        app1 = next(s for s in data["services"] if s["name"] == SERVICE)
        app1["activate"] = [["fallocate", "-l", str(96 * space.MIB), "/srv/app1/data/start.journal"], *app1["activate"]]

    with lab_fleet_changed(lab_env, tmp_path, journal_at_start):
        fill_until(lab_env, MIRROR, 56 * space.MIB)  # passes the check (32 MiB margin), not the app's start
        lab.fail("prod-east")
        state = failover(SERVICE, yes=True, return_state=True)
    assert state.is_failed()
    error = _failure_of(state)
    advice = getattr(error, "advice", "")
    assert "No space left on device" in advice and "the activation was undone: the app on mirror-west stopped" in advice
    assert "/srv/app1/data back as it was" in advice
    assert "app1 serves nowhere now: prod-east was fenced (powered off); DNS still points to it" in advice
    # true: the mirror's tree is back, no clone or marker left, DNS and the inventory unmoved
    assert before.read_text() == "stood here before the failover"
    assert not host_path(lab_env, MIRROR, "/srv/app1/data/start.journal").exists()
    assert not list(host_path(lab_env, MIRROR, "/srv/app1").glob(".hotspare-undone-*"))
    assert not host_path(lab_env, MIRROR, "/srv/hotspare/app1/active-copy").exists()
    assert dns_answer(lab_env) == [address(lab_env, "production")]
    row = copies.service_row(SERVICE)
    assert (row.state, row.failover) == ("protected", None)
    before.unlink()
    reset_layout(lab, lab_env)
