"""Benchmark: how long a failover drill of app1 takes and the RTO it measures. Prints a table; not a test.

    sudo .venv/bin/python bench/drill_bench.py                # 3 drills on a free slot
    sudo .venv/bin/python bench/drill_bench.py --runs 5 --slot 7

Starts its own lab (a free slot, or ``--slot``), a temporary HOTSPARE_HOME and a Prefect test
server, saves the lab's blocks, loads its fleet and replicates app1 once (a verified copy).
Then runs ``drill("app1")`` ``--runs`` times, each in this process's flow run, and reports per
drill: the whole drill (flow call, wall clock), the measured RTO (bubble made -> first healthy
answer inside it), and the time of each step from the drill's record. Writes bench/out/drill.json.
Numbers on a shared 2-core machine depend on its load: the 1-minute load average is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import bench_lab, run_meta, table, write_results

STEPS = (
    "clean up earlier drills",
    "write manifest",
    "make bubble",
    "mount copy",
    "start app",
    "health check",
    "canary login",
    "check isolation",
    "tear down and prove",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slot", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--out", default="bench/out/drill.json")
    args = parser.parse_args()
    with bench_lab("hotspare-drill-bench.", args.slot, args.keep) as bench:
        from flows.drill import drill
        from flows.replicate import replicate_service

        assert replicate_service("app1")["outcome"] == "ok"
        rows, results = [], []
        for number in range(1, args.runs + 1):
            load = os.getloadavg()[0]
            clock = time.monotonic()
            result = drill(service="app1", operator="bench")
            wall = time.monotonic() - clock
            steps = {step["step"]: step["seconds"] for step in result["steps"]}
            results.append({"run": number, "wall_seconds": round(wall, 3), "load_1m": load, **result})
            rows.append(
                [
                    f"drill {number}",
                    f"{wall:.2f}",
                    f"{result['rto_seconds']:.2f}",
                    f"{result['rpo_seconds']:.0f}",
                    "yes" if result["cleanup_proven"] else "NO",
                    *[f"{steps.get(name, 0):.2f}" for name in STEPS],
                    f"{load:.1f}",
                ]
            )
        print()
        table(
            [
                "run",
                "drill s",
                "RTO s",
                "RPO s",
                "cleanup",
                *[name.split()[0] + "…" if len(name) > 12 else name for name in STEPS],
                "load",
            ],
            rows,
        )
        write_results(
            {
                "meta": {**run_meta(), "total_seconds": round(time.monotonic() - bench.started, 1), "slot": bench.lab.slot},
                "drills": results,
            },
            args.out,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
