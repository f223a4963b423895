"""Replication preflight planners: is the source sane, is there room, is the mirror's hardware
enough (parsed from what ``/proc/meminfo``, ``df -B1`` and ``dpkg-query`` print)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from hotspare.planning import replication as plan
from hotspare.planning.replication import (
    Decision,
    HardwareFacts,
    SourceTotals,
)

NOW = datetime(2026, 11, 25, 13, 0, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


# ---------------------------------------------------------------------------------------
# judge_source / judge_room


def test_sane_source_goes():
    decision = plan.judge_source(SourceTotals(1000, 5_000_000), SourceTotals(990, 4_900_000), 0.5, [], force=False)
    assert decision == Decision(True, "source looks sane: 1000 files, 5000000 bytes")


def test_empty_source_is_refused_and_nothing_touched():
    decision = plan.judge_source(SourceTotals(0, 0), SourceTotals(1000, 5_000_000), 0.5, [], force=False)
    assert not decision.go
    assert "hold no files" in decision.reason
    assert "Nothing was touched; use force to override." in decision.reason


def test_missing_data_path_is_refused_and_named():
    decision = plan.judge_source(SourceTotals(10, 100), None, 0.5, ["/srv/shop/uploads"], force=False)
    assert not decision.go
    assert "data path(s) missing on production: /srv/shop/uploads" in decision.reason


def test_missing_path_and_empty_source_both_reported():
    decision = plan.judge_source(SourceTotals(0, 0), None, 0.5, ["/srv/a", "/srv/b"], force=False)
    assert not decision.go
    assert "/srv/a, /srv/b" in decision.reason and "hold no files" in decision.reason


def test_file_count_shrink_beyond_limit_is_refused_with_both_numbers():
    decision = plan.judge_source(SourceTotals(400, 5_000_000), SourceTotals(1000, 5_000_000), 0.5, [], force=False)
    assert not decision.go
    assert "1000 -> 400 files" in decision.reason
    assert "5000000 -> 5000000 bytes" in decision.reason
    assert "more than 50% gone" in decision.reason


def test_byte_shrink_beyond_limit_is_refused_even_with_same_file_count():
    decision = plan.judge_source(SourceTotals(1000, 1_000_000), SourceTotals(1000, 8_000_000), 0.5, [], force=False)
    assert not decision.go
    assert "1000 -> 1000 files" in decision.reason
    assert "8000000 -> 1000000 bytes" in decision.reason


def test_force_goes_but_says_forced_despite():
    decision = plan.judge_source(SourceTotals(100, 1000), SourceTotals(1000, 10_000), 0.5, [], force=True)
    assert decision.go
    assert decision.reason.startswith("forced despite: ")
    assert "1000 -> 100 files" in decision.reason


def test_force_on_an_empty_source_still_says_why():
    decision = plan.judge_source(SourceTotals(0, 0), None, 0.5, [], force=True)
    assert decision.go and "forced despite" in decision.reason and "hold no files" in decision.reason


def test_shrink_within_the_limit_goes():
    decision = plan.judge_source(SourceTotals(600, 6_000), SourceTotals(1000, 10_000), 0.5, [], force=False)
    assert decision.go
    assert decision.reason.startswith("source looks sane")


@pytest.mark.parametrize("max_shrink", [0.1, 0.2, 0.3, 0.5, 0.7])
def test_shrink_of_exactly_the_limit_goes(max_shrink):
    """ "Refuse when dropped by more than this fraction": exactly the fraction is allowed."""
    remaining = round(1000 * (1 - max_shrink))
    decision = plan.judge_source(SourceTotals(remaining, remaining), SourceTotals(1000, 1000), max_shrink, [], force=False)
    assert decision.go, decision.reason


def test_without_previous_copy_only_emptiness_matters():
    assert plan.judge_source(SourceTotals(1, 1), None, 0.5, [], force=False).go
    assert not plan.judge_source(SourceTotals(0, 0), None, 0.5, [], force=False).go


def test_previous_copy_of_zero_bytes_does_not_divide_by_zero():
    assert plan.judge_source(SourceTotals(10, 0), SourceTotals(10, 0), 0.5, [], force=False).go


def test_parse_file_sizes():
    assert plan.parse_file_sizes("12\n0\n4096\n\n") == SourceTotals(files=3, bytes=4108)
    assert plan.parse_file_sizes("") == SourceTotals(0, 0)


MIB16 = 16 * 2**20


def test_first_copy_needs_whole_size_plus_ten_percent():
    source = SourceTotals(10, 1_000_000_000)
    needed = 1_100_000_000 + MIB16
    assert plan.judge_room(needed, source, has_previous_copy=False) == Decision(
        True, f"mirror has room: {needed} bytes free, {needed} needed"
    )
    short = plan.judge_room(needed - 1, source, has_previous_copy=False)
    assert not short.go
    assert short.reason == (
        f"mirror is short of space: {needed - 1} bytes free, at least {needed} needed; free space or add disk"
    )


def test_later_copies_need_a_fifth():
    source = SourceTotals(10, 1_000_000_000)
    needed = 200_000_000 + MIB16
    assert plan.judge_room(needed, source, has_previous_copy=True).go
    assert not plan.judge_room(needed - 1, source, has_previous_copy=True).go
    # the same free space is not enough for a first copy
    assert not plan.judge_room(needed, source, has_previous_copy=False).go


# ---------------------------------------------------------------------------------------
# Host facts

MEMINFO = """\
MemTotal:        8153424 kB
MemFree:          512000 kB
MemAvailable:    4096000 kB
"""
DF = """\
         Size        Avail
 107374182400  53687091200
"""
OS_RELEASE = """\
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
ID=debian"""
PACKAGES = """\
nginx 1.22.1-9
openssl 3.0.15-1~deb12u1
libc6 2.36-9+deb12u9
half-installed
"""


def test_parse_meminfo_df_packages():
    assert plan.parse_meminfo_mb(MEMINFO) == 7962
    assert plan.parse_meminfo_mb("") == 0
    assert plan.parse_df(DF) == (107_374_182_400, 53_687_091_200)
    assert plan.parse_packages(PACKAGES) == {
        "nginx": "1.22.1-9",
        "openssl": "3.0.15-1~deb12u1",
        "libc6": "2.36-9+deb12u9",
    }


def test_parse_host_facts_multi_section():
    output = "4\n---\n" + MEMINFO + "---\n" + DF + "---\n" + OS_RELEASE + "\n---\n" + PACKAGES
    facts = plan.parse_host_facts(output)
    assert facts == HardwareFacts(
        cpus=4,
        memory_mb=7962,
        disk_bytes=107_374_182_400,
        available_bytes=53_687_091_200,
        os_release=OS_RELEASE,
        packages={"nginx": "1.22.1-9", "openssl": "3.0.15-1~deb12u1", "libc6": "2.36-9+deb12u9"},
    )


def test_host_facts_argv_passes_the_path_as_argument():
    assert plan.host_facts_argv("/srv/shop data") == ["sh", "-c", plan.FACTS_SCRIPT, "sh", "/srv/shop data"]


PRODUCTION = HardwareFacts(8, 16000, 200 * 10**9, 100 * 10**9, OS_RELEASE, {"nginx": "1.22.1-9", "libc6": "2.36-9"})
DECLARED = {"cpus": 8, "memory_mb": 16000, "disk_gb": 200}


def test_compare_hardware_equal_or_better_is_fine():
    assert plan.compare_hardware(PRODUCTION, PRODUCTION, DECLARED, DECLARED) == []
    bigger = replace(PRODUCTION, cpus=16, memory_mb=32000, disk_bytes=400 * 10**9, packages={**PRODUCTION.packages, "extra": "1"})
    assert plan.compare_hardware(PRODUCTION, bigger, DECLARED, {"cpus": 16, "memory_mb": 32000, "disk_gb": 400}) == []


@pytest.mark.parametrize(
    ("mirror", "declared_mirror", "expected"),
    [
        (replace(PRODUCTION, cpus=4), DECLARED, ["mirror has 4 CPUs, production 8"]),
        (replace(PRODUCTION, memory_mb=8000), DECLARED, ["mirror has 8000 MiB memory, production 16000"]),
        (replace(PRODUCTION, disk_bytes=10**11), DECLARED, [f"mirror disk is {10**11} bytes, production {200 * 10**9}"]),
        (PRODUCTION, {**DECLARED, "memory_mb": 8000}, ["fleet file declares 8000 MiB memory on the mirror, 16000 on production"]),
        (PRODUCTION, {**DECLARED, "cpus": 2}, ["fleet file declares 2 CPUs on the mirror, 8 on production"]),
        (PRODUCTION, {**DECLARED, "disk_gb": 100}, ["fleet file declares 100 GiB disk on the mirror, 200 on production"]),
        (
            replace(PRODUCTION, os_release='PRETTY_NAME="Ubuntu 24.04.1 LTS"\nID=ubuntu'),
            DECLARED,
            ["OS release differs: Ubuntu 24.04.1 LTS on the mirror vs Debian GNU/Linux 12 (bookworm)"],
        ),
        (replace(PRODUCTION, packages={"libc6": "2.36-9"}), DECLARED, ["1 package(s) missing on the mirror: nginx"]),
        (
            replace(PRODUCTION, packages={"nginx": "1.22.0-1", "libc6": "2.36-9"}),
            DECLARED,
            ["1 package(s) at another version on the mirror: nginx 1.22.0-1 vs 1.22.1-9"],
        ),
    ],
)
def test_compare_hardware_names_each_shortfall(mirror, declared_mirror, expected):
    assert plan.compare_hardware(PRODUCTION, mirror, DECLARED, declared_mirror) == expected


def test_compare_hardware_lists_every_problem_and_skips_undeclared():
    worse = HardwareFacts(2, 1000, 1, 1, "", {})
    problems = plan.compare_hardware(PRODUCTION, worse, None, None)
    assert len(problems) == 5
    assert problems[3].startswith("OS release differs: unknown on the mirror")
    assert problems[4] == "2 package(s) missing on the mirror: libc6, nginx"
