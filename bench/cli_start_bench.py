"""Benchmark: how fast the command line answers, against a bare ``python -c pass`` in the same run.
Prints a table; not a test.

    sudo .venv/bin/python bench/cli_start_bench.py              # --help, fleet check, status, failover --dry-run, replicate
    .venv/bin/python bench/cli_start_bench.py --no-lab --runs 15 # only --help and fleet check (no root, no lab)

Each command runs as its own process (``python -m hotspare.cli ...``, the interpreter the
``hotspare`` script uses), interleaved with ``python -c pass`` so both see the same load; the
wall time of each process is taken with ``time.perf_counter`` around ``subprocess.run``, and
the medians of ``--runs`` runs are compared. ``status`` and ``failover --dry-run`` need the
lab: the benchmark starts its own lab and Prefect test server (bench/common.py), saves the
blocks, loads the fleet and replicates app1 once, so the dry run has a copy to plan with. The
modules each command imports are counted once with ``-X importtime``.

``hotspare replicate app1`` (nothing changed since the last copy) is the whole command an operator
or a schedule runs; its run record (``run.started_at`` -> ``ended_at`` in the inventory: lock,
steps, summary) is what the replication itself took, and the rest is the command's own cost
around it: the interpreter, imports, the Prefect flow run's start and end, the exit. The import
of the runbook alone (``python -c "import flows.replicate"``) is measured beside it.

Targets (issue 22): ``--help`` and ``fleet check`` within 10x ``python -c pass``. Writes
bench/out/cli_start.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    isolate_environment,
    lab_and_prefect,
    run_meta,
    table,
    write_results,
)

PROJECT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 10.0
FLEET_SAMPLE = PROJECT / "tests" / "data" / "fleet-basic.yaml"


def wall_seconds(argv: list[str], environment: dict) -> float:
    """One process's wall time (its exit code is checked: a failing command is no measurement)."""
    started = time.perf_counter()
    completed = subprocess.run(argv, env=environment, capture_output=True, text=True, check=False, timeout=300)
    elapsed = time.perf_counter() - started
    if completed.returncode not in (0, 9):
        raise SystemExit(f"{' '.join(argv)} exited {completed.returncode}: {completed.stderr.strip()[-400:]}")
    return elapsed


def imported_modules(argv: list[str], environment: dict) -> int:
    """How many modules ``argv`` imports (``-X importtime`` prints one line per module)."""
    completed = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]], env=environment, capture_output=True, text=True, check=False, timeout=300
    )
    return sum(1 for line in completed.stderr.splitlines() if line.startswith("import time:") and "|" in line) - 1


def last_run_seconds() -> float:
    """How long the inventory's newest run record lasted (its lock, steps and summary)."""
    from sqlmodel import select

    from hotspare.inventory.db import session
    from hotspare.inventory.models import RunRow

    with session() as db:
        row = db.exec(select(RunRow).order_by(RunRow.id.desc()).limit(1)).one()  # type: ignore[union-attr]
        return (row.ended_at - row.started_at).total_seconds()


def measure(commands: dict[str, list[str]], environment: dict, runs: int) -> dict:
    """Median wall seconds of each command, runs interleaved (a warm-up round first, not counted);
    for ``replicate`` also its run record's seconds and the wall time outside it."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    records: dict[str, list[float]] = {}
    for number in range(runs + 1):
        for name, argv in commands.items():
            elapsed = wall_seconds(argv, environment)
            if number:
                times[name].append(elapsed)
                if name.startswith("hotspare replicate"):
                    records.setdefault(name, []).append(last_run_seconds())
    results = {
        name: {
            "median_s": round(statistics.median(values), 4),
            "min_s": round(min(values), 4),
            "max_s": round(max(values), 4),
            "runs": len(values),
            "modules": imported_modules(commands[name], environment),
        }
        for name, values in times.items()
    }
    for name, seconds in records.items():
        outside = [wall - record for wall, record in zip(times[name], seconds)]
        results[name] |= {
            "run_record_median_s": round(statistics.median(seconds), 4),
            "outside_record_median_s": round(statistics.median(outside), 4),
            "outside_record_min_s": round(min(outside), 4),
        }
    return results


def commands_for(fleet_file: Path, with_lab: bool) -> dict[str, list[str]]:
    python = sys.executable
    commands = {
        "python -c pass": [python, "-c", "pass"],
        "hotspare --help": [python, "-m", "hotspare.cli", "--help"],
        "hotspare fleet check": [python, "-m", "hotspare.cli", "fleet", "check", str(fleet_file)],
    }
    if with_lab:
        commands["hotspare status"] = [python, "-m", "hotspare.cli", "status", "--timeout", "1"]
        commands["hotspare failover --dry-run"] = [python, "-m", "hotspare.cli", "failover", "app1", "--dry-run"]
        commands["import flows.replicate"] = [python, "-c", "import flows.replicate"]
        commands["hotspare replicate app1"] = [python, "-m", "hotspare.cli", "replicate", "app1"]
    return commands


def report(results: dict) -> None:
    bare = results["python -c pass"]["median_s"]
    rows = []
    for name, result in results.items():
        ratio = result["median_s"] / bare
        target = (
            f"<= {TARGET_RATIO:g}x: {'met' if ratio <= TARGET_RATIO else 'MISSED'}"
            if name in ("hotspare --help", "hotspare fleet check")
            else "-"
        )
        result["ratio_to_python"] = round(ratio, 2)
        rows.append(
            (
                name,
                f"{result['median_s'] * 1000:.0f}",
                f"{result['min_s'] * 1000:.0f}",
                f"{ratio:.1f}x",
                result["modules"],
                target,
            )
        )
    table(("command", "median ms", "min ms", "vs python -c pass", "modules", "target"), rows)
    for name, result in results.items():
        if "run_record_median_s" in result:
            print(
                f"{name}: {result['median_s']:.2f} s in all, of which the run record {result['run_record_median_s']:.2f} s; "
                f"the command's own cost around it {result['outside_record_median_s']:.2f} s (medians)"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9, help="runs per command (default 9), after one warm-up")
    parser.add_argument("--no-lab", action="store_true", help="only --help and fleet check (no lab, no Prefect)")
    parser.add_argument("--slot", type=int, default=None, help="lab slot (default: a free one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--out", default=str(PROJECT / "bench" / "out" / "cli_start.json"))
    args = parser.parse_args()
    started = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="hotspare-cli-bench."))
    isolate_environment(home)
    environment = {**os.environ, "PYTHONPATH": str(PROJECT), "COLUMNS": "100"}
    if args.no_lab:
        results = measure(commands_for(FLEET_SAMPLE, False), environment, args.runs)
    else:
        with lab_and_prefect(home, args.slot, args.keep, started) as (lab, env):
            from prefect.settings import PREFECT_API_URL

            from hotspare.cli import main as hotspare

            lab.register_blocks()
            assert hotspare(["fleet", "load", env["fleet_file"]]) == 0
            assert hotspare(["replicate", "app1"]) == 0
            environment["PREFECT_API_URL"] = PREFECT_API_URL.value()
            results = measure(commands_for(Path(env["fleet_file"]), True), environment, args.runs)
    print(f"\nCLI start, medians of {args.runs} runs each (interleaved), wall time per process:")
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at the end")
    report(results)
    write_results(
        {"meta": {**run_meta(), "total_seconds": round(time.monotonic() - started, 1), "runs": args.runs}, "commands": results},
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
