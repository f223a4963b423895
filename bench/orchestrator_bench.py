"""Benchmark: what the one-orchestrator-per-fleet check costs a run.

Against a lab of its own (real BIND with TSIG): the first check of a process (inventory
identity, one TCP DNS query, the claim's signed compare-and-swap), an uncached check that
reads the marker (N times), a cached check (N times), and beside them the bare DNS TXT query
with dnspython and `dig` for the same record.

    .venv/bin/python bench/orchestrator_bench.py [--slot N] [--reps 20] [--keep]

Prints a table; writes bench/out/orchestrator_bench.json. Starts its own lab on a free slot (root).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import bench_lab


def timed(function, reps: int) -> list[float]:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slot", type=int, default=None)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="leave the lab up at the end")
    args = parser.parse_args()
    with bench_lab("hotspare-orchestrator-bench.", args.slot, args.keep, load_fleet=False) as bench:
        lab, env = bench.lab, bench.env
        from hotspare.adapters.dns import AuthoritativeServer, read_txt
        from hotspare.cli import main as cli
        from hotspare.planning.orchestrator import record_name
        from tasks.orchestrator import forget_checks, require_orchestrator

        lab.register_blocks()
        assert cli(["fleet", "load", env["fleet_file"]]) == 0  # claims the fleet: the first check
        name = record_name(env["zone"])
        server = AuthoritativeServer(env["zone"], "127.0.0.1", env["dns"]["port"])

        def uncached():
            forget_checks()
            require_orchestrator(None, "bench")

        rows = {
            "check, uncached (identity + marker query)": timed(uncached, args.reps),
            "check, cached (same process)": timed(lambda: require_orchestrator(None, "bench"), args.reps),
            "bare dnspython TXT query": timed(lambda: read_txt(server, name), args.reps),
            "bare dig +tcp TXT": timed(
                lambda: subprocess.run(
                    ["dig", "+tcp", "+short", "-p", str(env["dns"]["port"]), "@127.0.0.1", name, "TXT"],
                    capture_output=True,
                    check=True,
                ),
                args.reps,
            ),
        }
    print(f"{'what':<45} {'median ms':>10} {'max ms':>8}")
    results = {}
    for what, times in rows.items():
        results[what] = {"median_ms": round(statistics.median(times), 3), "max_ms": round(max(times), 3)}
        print(f"{what:<45} {results[what]['median_ms']:>10.3f} {results[what]['max_ms']:>8.3f}")
    out = ROOT / "bench" / "out" / "orchestrator_bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
