"""Room on the mirror without the lab: each service's bound, quota groups and the refusals that
name the numbers (the lab side is tests/test_space.py)."""

from __future__ import annotations

import re

from hotspare.planning import space


def test_quota_group_is_stable_per_service_and_level_one():
    assert space.qgroup_id("app1") == space.qgroup_id("app1") != space.qgroup_id("app3")
    assert re.fullmatch(r"1/[1-9][0-9]*", space.qgroup_id("app1"))


def test_default_bound_is_an_equal_share_of_nine_tenths_of_the_mirror():
    class Spec:
        def __init__(self, name, mirror, gib=None):
            self.name, self.mirror, self.space_gib = name, mirror, gib

    class Fleet:
        services = [Spec("a", "m"), Spec("b", "m"), Spec("c", "other", 2)]

        class defaults:
            space_gib = None

        def service(self, name):
            return next(s for s in self.services if s.name == name)

    bound, why = space.bound_of(Fleet(), "a", "m", 10 * space.GIB)
    assert bound == int(10 * space.GIB * 0.9 / 2) and "equal share" in why and "a, b" in why
    assert space.bound_of(Fleet(), "c", "other", 10 * space.GIB) == (2 * space.GIB, "services.c.space_gib 2 GiB")


def test_room_refusal_names_the_host_the_free_and_needed_space_and_what_to_do():
    facts = space.parse_room(
        "path\tclone\t0\t0\t1048576 /srv\t/srv/app1/data\n"
        "path\trsync\t5242880\t0\t1048576 /srv\t/srv/app1/app\n"
        "path\trsync\t4096\t8192\t900000000 /\t/etc/app1\n"
        "root\t1048576 /srv\n"
    )
    decision = space.judge_activation_room("app1", "mirror-west", "c1", facts)
    assert not decision.go
    assert decision.reason.startswith("failover of app1 to mirror-west refused before any change: /srv has 1.0 MiB free")
    assert "needs 37.0 MiB" in decision.reason  # 32 MiB margin + 5 MiB copied + 8 KiB kept aside from /etc
    assert "Free space on mirror-west" in decision.reason and decision.reason.endswith("Nothing was changed")
    assert "/ has" not in decision.reason  # the other filesystem has room
    roomy = space.parse_room("path\trsync\t4096\t0\t900000000 /srv\t/srv/app1/app\nroot\t900000000 /srv\n")
    assert space.judge_activation_room("app1", "mirror-west", "c1", roomy).go


def test_a_full_quota_group_refuses_too():
    facts = space.parse_room("root\t900000000 /srv\ngroup\t100000000\t104857600\n")
    decision = space.judge_activation_room("app1", "mirror-west", "c1", facts)
    assert not decision.go and "app1's own area holds 95.4 MiB of its bound 100.0 MiB" in decision.reason


def test_a_copy_past_its_bound_is_refused_up_front_with_the_numbers():
    assert space.judge_bound("app3", "mirror-west", 10 * space.MIB, 20 * space.MIB, 64 * space.MIB, "x").go
    decision = space.judge_bound(
        "app3", "mirror-west", 50 * space.MIB, 20 * space.MIB, 64 * space.MIB, "services.app3.space_gib 0.0625 GiB"
    )
    assert not decision.go and decision.reason.startswith(
        "replication of app3 refused: its area on mirror-west would pass its bound of 64.0 MiB "
        "(services.app3.space_gib 0.0625 GiB): it holds 50.0 MiB and this copy needs about 20.0 MiB more"
    )
    facts = space.parse_quota("quota=enabled\ngroup=created\nadopted=/srv/hotspare/app3/work\nreferenced=4096\nlimit=67108864\n")
    assert facts == space.QuotaFacts(4096, 67108864, True, True, ("/srv/hotspare/app3/work",))
    assert space.parse_quota("referenced=4096\nlimit=none\n").limit is None
