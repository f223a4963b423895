"""Pure tests of the verification scope planner: what changed plus a rolling slice, full passes."""

from __future__ import annotations

from hotspare.planning.verification_scope import (
    DAY_SECONDS,
    FileEntry,
    PassState,
    changed_paths,
    extra_in_copy,
    itemized_files,
    parse_sized_listing,
    plan_scope,
    runs_left,
)

ROOTS = ["/srv/app/data", "/etc/passwd"]
NOW = 1_800_000_000.0


def tree(count: int = 40, size: int = 100) -> dict[str, FileEntry]:
    """``count`` files in folders of ten under /srv/app/data, plus /etc/passwd."""
    files = {f"/srv/app/data/d{number // 10}/f{number:03}": FileEntry(1000.0, size) for number in range(count)}
    return files | {"/etc/passwd": FileEntry(1000.0, 50)}


def expand(paths, files) -> set[str]:
    """Every file a list of named paths makes rsync compare."""
    return {path for path in files if any(path == name or path.startswith(name + "/") for name in paths)}


def test_every_file_is_compared_within_the_period_whatever_the_changes():
    files = tree()
    state, compared, completed_at = PassState(), {}, None
    runs = 14  # 7 days, twice a day
    for run in range(runs):
        now = NOW + run * DAY_SECONDS / 2
        scope = plan_scope(files, set(), state, ROOTS, period_days=7, runs_per_day=2, now=now)
        for path in expand(scope.paths, files):
            compared.setdefault(path, run)
        state = scope.next_state
        if scope.pass_complete:
            completed_at = run
            break
    assert set(compared) == set(files)
    assert completed_at is not None and completed_at <= runs - 1
    assert state == PassState()  # the next run starts a new pass


def test_a_slice_is_a_fair_share_and_names_its_files():
    files = tree(100)
    scope = plan_scope(files, set(), PassState(), ROOTS, period_days=5, runs_per_day=2, now=NOW)
    assert not scope.whole_tree and not scope.pass_complete
    assert scope.slice_files == 11  # 101 files over 10 runs, rounded up (and by bytes)
    assert scope.paths == tuple(sorted(files)[:11])
    assert scope.next_state.cursor == sorted(files)[10] and scope.next_state.started_at == NOW


def test_missed_runs_make_the_rest_of_the_pass_come_at_once():
    files = tree()
    state = PassState(cursor=sorted(files)[4], started_at=NOW - 7 * DAY_SECONDS, files_done=5)
    scope = plan_scope(files, set(), state, ROOTS, period_days=7, runs_per_day=2, now=NOW)
    assert scope.pass_complete and scope.next_state == PassState()
    assert scope.pass_started_at == state.started_at and scope.pass_files == len(files)
    assert runs_left(7, 2, NOW, NOW) == 14 and runs_left(7, 2, NOW - 7 * DAY_SECONDS, NOW) == 1


def test_changed_files_are_compared_besides_the_slice():
    files = tree()
    changed = {"/srv/app/data/d3/f035", "/srv/app/data/d1/f012", "/srv/app/gone"}
    scope = plan_scope(files, changed, PassState(), ROOTS, period_days=7, runs_per_day=2, now=NOW)
    named = expand(scope.paths, files)
    assert {"/srv/app/data/d3/f035", "/srv/app/data/d1/f012"} <= named
    assert scope.changed_files == 2 and scope.compared_files == len(named)


def test_everything_changed_compares_the_whole_tree_and_completes_a_pass():
    files = tree()
    scope = plan_scope(files, set(files), PassState(), ROOTS, period_days=7, runs_per_day=2, now=NOW)
    assert scope.whole_tree and scope.paths == tuple(ROOTS) and scope.pass_complete
    full = plan_scope(files, set(), PassState("x", NOW, 3), ROOTS, period_days=7, runs_per_day=2, now=NOW, full=True)
    assert full.whole_tree and full.pass_files == len(files)


def test_scattered_files_are_named_one_by_one_however_many():
    files = tree(4000)
    scattered = {path for number, path in enumerate(sorted(files)) if number % 2}
    scope = plan_scope(files, scattered, PassState(), ROOTS, period_days=7, runs_per_day=2, now=NOW)
    assert not scope.whole_tree and scattered <= set(scope.paths) and scope.compared_files == len(scope.paths)


def test_changed_paths_come_from_itemize_mtimes_and_listing_differences():
    production = {"/d/a": FileEntry(100, 1), "/d/b": FileEntry(200, 1), "/d/c": FileEntry(50, 2), "/d/e": FileEntry(10, 1)}
    copy = {"/d/a": FileEntry(100, 1), "/d/b": FileEntry(200, 1), "/d/c": FileEntry(50, 3), "/d/e": FileEntry(10, 1)}
    assert changed_paths(["/d/e"], production, copy, since=150) == {"/d/e", "/d/b", "/d/c"}
    assert changed_paths([], production, copy, since=None) == {"/d/c"}
    assert extra_in_copy(production, copy | {"/d/x": FileEntry(1, 1), "/d/x.sock": FileEntry(1, 0)}, ["*.sock"]) == ["/d/x"]


def test_itemized_files_from_a_copy_steps_output():
    output = "\n".join(
        [
            "cd+++++++++ srv/app/data/new/",
            ">f+++++++++ srv/app/data/new/file one",
            ">f.st...... srv/app/data/changed",
            "cL+++++++++ srv/app/data/link -> target",
            "hf+++++++++ srv/app/data/twin => srv/app/data/changed",
            ".d..t...... srv/app/data/",
            "*deleting   srv/app/data/old",
            "Number of files: 12 (reg: 10, dir: 2)",
            "Total transferred file size: 1,234 bytes",
        ]
    )
    assert itemized_files(output) == [
        "/srv/app/data/new/file one",
        "/srv/app/data/changed",
        "/srv/app/data/link",
        "/srv/app/data/twin",
    ]


def test_listings_name_production_paths():
    listing = "1.5\t10\t/copy/tree/srv/a\n2.0\t3\t/copy/tree/srv/b c\nbroken line\n"
    assert parse_sized_listing(listing, "/copy/tree") == {"/srv/a": FileEntry(1.5, 10), "/srv/b c": FileEntry(2.0, 3)}


def test_half_the_data_changed_is_compared_as_the_whole_tree_once_it_is_big():
    big = {f"/srv/app/data/f{number}": FileEntry(1000.0, 2**20) for number in range(200)}
    changed = set(sorted(big)[:120])
    scope = plan_scope(big, changed, PassState(), ROOTS, period_days=7, runs_per_day=2, now=NOW)
    assert scope.whole_tree and "rsync reads the rest faster" in scope.reason
    small = {path: FileEntry(1000.0, 10) for path in big}  # the same share of a small service: named files
    assert not plan_scope(small, changed, PassState(), ROOTS, period_days=7, runs_per_day=2, now=NOW).whole_tree
