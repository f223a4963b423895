"""The preflight's one-round-trip programs, run by this machine's sh on real folders."""

from __future__ import annotations

import subprocess

from hotspare.planning import preflight_facts as facts


def test_production_names_missing_paths_sizes_the_present_ones_and_reads_its_clock(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a").write_bytes(b"x" * 10)
    (data / "sub" / "b").write_bytes(b"y" * 5)
    argv = facts.production_facts_argv([str(data), str(tmp_path / "gone")])
    found = facts.parse_production_facts(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
    assert found.missing_paths == (str(tmp_path / "gone"),)
    assert (found.totals.files, found.totals.bytes) == (2, 15)
    assert found.clock > 1.7e9
    nothing = subprocess.run(facts.production_facts_argv([str(tmp_path / "gone")]), capture_output=True, text=True, check=True)
    assert facts.parse_production_facts(nothing.stdout).totals.files == 0


def test_mirror_names_its_baseline_what_is_gone_and_what_can_resume(tmp_path):
    copies = tmp_path / "shop" / "copies"
    (copies / "shop-2" / "tree").mkdir(parents=True)  # verified, still there
    (copies / "shop-4").mkdir()  # an interrupted copy left files
    argv = facts.mirror_facts_argv("shop", ["shop-3", "shop-2", "shop-1"], ["shop-5", "shop-4"])
    argv[argv.index("/srv/hotspare/shop")] = str(tmp_path / "shop")  # the service root, here in a temporary folder
    found = facts.parse_mirror_facts(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
    assert found.baseline == "shop-2" and found.gone == ("shop-3",) and found.resumable == "shop-4"
    assert not found.baseline_is_snapshot and found.available_bytes > 0
    assert "filesystem=" in found.store_output and "work=absent" in found.store_output


def test_production_sums_its_sizes_itself_past_32_bits(tmp_path):
    """Production answers with two totals, not a line per file; awk's sum stays exact past 2**32
    (sparse files: their apparent size is what the shrink check compares)."""
    data = tmp_path / "data"
    data.mkdir()
    for index in range(3):
        with open(data / f"big{index}", "wb") as handle:
            handle.truncate(5 * 10**9 + index)
    ran = subprocess.run(facts.production_facts_argv([str(data)]), capture_output=True, text=True, check=True).stdout
    assert "files=3\nbytes=15000000003\n" in ran
    assert facts.parse_production_facts(ran).totals.bytes == 15_000_000_003
