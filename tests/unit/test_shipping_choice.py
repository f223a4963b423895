"""Shipping is asked for (``btrfs-send``); the mirror's quota facts say whether a stream is bounded:
only simple quotas bound what ``btrfs receive`` writes (``planning/copy_backends.shipping_choice``).
``auto`` keeps snapshots filled by rsync and says which it would be."""

from __future__ import annotations

from hotspare.planning import copy_backends, space

FACTS = "filesystem=btrfs\ntool=yes\nwork=subvolume\nquota={quota}\nsimple_quota={simple}\n"


def facts(quota: str, simple: str = "yes") -> copy_backends.StoreFacts:
    return copy_backends.parse_store_facts(FACTS.format(quota=quota, simple=simple))


def test_asked_for_shipping_is_bounded_where_simple_quotas_count_or_can_be_turned_on():
    for bounded in (facts("squota"), facts("off", "yes")):
        asked = copy_backends.shipping_choice(bounded, "btrfs-send")
        assert asked.go and "inside the service's quota group" in asked.reason


def test_auto_keeps_rsync_and_says_whether_a_stream_would_be_bounded():
    for bounded in (facts("squota"), facts("off", "yes")):
        kept = copy_backends.shipping_choice(bounded)
        assert not kept.go and "ask for btrfs-send" in kept.reason and "would bound" in kept.reason
    for unbounded in (facts("qgroup"), facts("off", "no"), facts("unknown")):
        kept = copy_backends.shipping_choice(unbounded)
        assert not kept.go and "could not bound" in kept.reason


def test_explicit_choices_are_honoured_and_say_when_unbounded():
    asked = copy_backends.shipping_choice(facts("qgroup"), "btrfs-send")
    assert asked.go and "outside the service's space bound" in asked.reason
    for backend in ("btrfs-snapshot", "hard-links"):
        refused = copy_backends.shipping_choice(facts("squota"), backend)
        assert not refused.go and f"asks for {backend}" in refused.reason


def test_the_quota_step_reports_its_mode_and_the_bounded_area():
    output = "quota=enabled-simple\nmode=squota\ngroup=created\narea=created\nadopted=/srv/hotspare/a/received\narea=bounded\nreferenced=16384\nlimit=67108864\n"
    parsed = space.parse_quota(output)
    assert (parsed.mode, parsed.area_bounded, parsed.enabled_now, parsed.limit) == ("squota", True, True, 64 * space.MIB)
    assert "simple quotas enabled" in space.quota_sentence("a", "m", parsed, "why")
    assert not space.parse_quota("mode=qgroup\nreferenced=1\nlimit=none\n").area_bounded


def test_the_quota_command_passes_the_area_and_the_ioctl_program_as_data():
    argv = space.quota_argv("/srv/hotspare/a", "a", 1024, "/srv/hotspare/a/received")
    assert argv[-4:] == ["/srv/hotspare/a", space.qgroup_id("a"), "1024", "/srv/hotspare/a/received"]
    assert f"SIMPLE={space.SIMPLE_QUOTA_PROGRAM}" in argv and "0xC0109428" in space.SIMPLE_QUOTA_PROGRAM
