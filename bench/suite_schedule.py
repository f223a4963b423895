"""How the suite's modules share the test processes: seconds per module from a run's JUnit XML,
and the wall time each queue order gives (a pytest-xdist ``--dist loadfile`` simulation).

    HOTSPARE_TEST_WORKERS=3 bash scripts/test.sh --junitxml=/tmp/run.xml
    python bench/suite_schedule.py /tmp/run.xml

The seconds of a module are those of its tests, setup and teardown included (pytest's default
JUnit durations). The simulation gives each process the next module whenever it runs dry, as
pytest-xdist does: it shows whether the queue's order leaves one process running alone at the
end (a big module last), which more processes cannot fix. Machine load is not in it: compare
real runs with their load averages for that.
"""

from __future__ import annotations

import argparse
import heapq
import sys
import xml.etree.ElementTree as ElementTree
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_seconds(junit_file: Path) -> tuple[dict[str, float], Counter[str]]:
    """({module path: seconds}, {module path: number of tests}) in the file's order."""
    seconds: dict[str, float] = {}
    counts: Counter[str] = Counter()
    for case in ElementTree.parse(junit_file).getroot().iter("testcase"):
        module = case.get("classname", "").split("::")[0]
        # JUnit classnames are dotted ("tests.test_cli" or "tests.test_cli.TestX"): back to a path.
        parts = module.split(".")
        while parts and not (ROOT / Path(*parts)).with_suffix(".py").exists():
            parts.pop()
        path = "/".join(parts) + ".py" if parts else module
        seconds[path] = seconds.get(path, 0.0) + float(case.get("time", "0") or 0)
        counts[path] += 1
    return seconds, counts


def wall_time(order: list[str], seconds: dict[str, float], processes: int) -> float:
    """Seconds until the last process ends when each takes the next module as it runs dry."""
    ends = [0.0] * processes
    heapq.heapify(ends)
    for module in order:
        heapq.heappush(ends, heapq.heappop(ends) + seconds[module])
    return max(ends)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("junit", type=Path, help="JUnit XML of a whole run (pytest --junitxml)")
    parser.add_argument("--top", type=int, default=25, help="how many of the slowest modules to print")
    options = parser.parse_args(argv)

    seconds, counts = module_seconds(options.junit)
    total = sum(seconds.values())
    print(f"{len(seconds)} modules, {sum(counts.values())} tests, {total:.0f} s of test time in all")
    for module, spent in sorted(seconds.items(), key=lambda item: -item[1])[: options.top]:
        print(f"{spent:8.1f} s  {counts[module]:4d} tests  {module}")
    # pytest-xdist's default queue (--loadscope-reorder): most tests first; then slowest first.
    by_count = sorted(seconds, key=lambda module: -counts[module])
    by_seconds = sorted(seconds, key=lambda module: -seconds[module])
    print("simulated wall time (test time only; session setup and machine load not included):")
    for processes in (2, 3, 4):
        print(
            f"  {processes} processes: most tests first {wall_time(by_count, seconds, processes):6.0f} s, "
            f"slowest first {wall_time(by_seconds, seconds, processes):6.0f} s, "
            f"ideal {max(total / processes, max(seconds.values())):6.0f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
