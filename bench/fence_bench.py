"""Benchmark: what fencing a dead production through its BMC adds to an emergency failover.
Prints a table; not a test.

    sudo .venv/bin/python bench/fence_bench.py                 # 4 rounds (~3 min once the machine is quiet)
    sudo .venv/bin/python bench/fence_bench.py --rounds 1 --quiet-wait 0

Starts its own lab, Prefect test server and inventory (bench/failover_bench.py's set-up), replicates
app1 once, then alternates, ``--rounds`` times each:

- **BMC fence**: ``lab.fail("prod-east")`` (silent: three sites would call it dead), then
  ``failover("app1", yes=True)``. The fence probes its SSH port (0.5 s TCP connect bound),
  then powers prod-east off through its IPMI BMC, alongside the activation; DNS waits for it.
- **no fence** (the anchor): the same failover in the same process with the fence task replaced
  by one that returns at once — what the failover costs without any fencing at all.

The clock runs from the outage to the app answering through the DNS name at the mirror's address
(bench/failover_bench.py's prober). Also timed, bare: ``ipmitool chassis power off`` and
``status`` against the same BMC (the lower bound of any BMC fence). Target (the issue): the fence of
a dead production adds at most 1 s. Writes bench/out/fence.json.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench.common import isolate_environment, lab_and_prefect, round_arguments, run_meta, table, write_results

from failover_bench import Bench, wait_for_quiet

OUT = ROOT / "bench" / "out" / "fence.json"
TARGET_SECONDS = 1.0


def bare_ipmitool(env: dict, host: str) -> dict:
    """Seconds of a bare `ipmitool chassis power off` and `status` against the host's BMC, then on."""
    from hotspare import access
    from hotspare.adapters import ipmi

    spec = access.loaded_fleet().server(host).bmc
    username, password = access.bmc_login(spec.credentials_block)
    environment = {**os.environ, "IPMI_PASSWORD": password}
    seconds = {}
    for action in ("off", "status", "on"):
        argv = ipmi.make_power_command(spec.address, spec.port, username, action)
        started = time.perf_counter()
        subprocess.run(argv, env=environment, capture_output=True, timeout=30, check=True)
        seconds[action] = round(time.perf_counter() - started, 3)
    return seconds


def no_fence_stub():
    """A fence task that returns at once: the anchor "no fencing at all"."""
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    @task(name="fence production", cache_policy=NO_CACHE)
    def fence(service: str, server: str, seconds: float = 8.0, power_off: bool = True) -> dict:
        return {"fenced": False, "method": "unfenced", "detail": "benchmark anchor: no fence", "seconds": 0.0}

    return fence


def main() -> int:
    args = round_arguments(__doc__, OUT, rounds=4, what="failovers of each kind")
    # What failover_bench.Bench reads of its arguments.
    args.runs, args.warm_pool_run, args.no_planned = args.rounds, False, True

    load = wait_for_quiet(args.max_load, args.quiet_wait)
    home = Path(tempfile.mkdtemp(prefix="hotspare-fence-bench."))
    isolate_environment(home)
    started = time.monotonic()
    with lab_and_prefect(home, args.slot, args.keep, started) as (lab, env):
        import flows.failover

        bench = Bench(lab, env, args)
        bench.setup()
        bench.reset_layout()
        replicated = bench.replicate()
        print(f"replicated app1 once (copy {replicated['copy_id']}) in {replicated['seconds']:.2f} s", flush=True)
        real_fence, stub = flows.failover.fence, no_fence_stub()
        runs: dict[str, list[dict]] = {"BMC fence": [], "no fence": []}
        for index in range(args.rounds):
            for mode in ("BMC fence", "no fence") if index % 2 == 0 else ("no fence", "BMC fence"):
                flows.failover.fence = real_fence if mode == "BMC fence" else stub
                print(f"round {index + 1}, {mode}:", flush=True)
                run = bench.emergency_run(len(runs[mode]) + 1)
                run["fence_method"] = run.get("fence_detail")
                runs[mode].append(run)
        flows.failover.fence = real_fence
        bare = bare_ipmitool(env, "prod-east")
    medians = {mode: statistics.median(run["answers_through_dns"] for run in items) for mode, items in runs.items()}
    added = medians["BMC fence"] - medians["no fence"]
    fence_own = statistics.median(run["step_seconds"].get("fence production", 0.0) for run in runs["BMC fence"])
    print("\nEmergency failover of app1 (production silent), outage -> app answers through DNS at the mirror, medians:")
    table(("mode", "seconds", "runs"), [(mode, f"{medians[mode]:.2f}", len(items)) for mode, items in runs.items()])
    print(
        f"\n  the fence added {added:+.2f} s (target <= {TARGET_SECONDS:.1f} s: {'met' if added <= TARGET_SECONDS else 'missed'}); "
        f"the wait for it after the activation (its step) {fence_own:.2f} s"
    )
    print(
        f"  bare ipmitool against the same BMC: power off {bare['off']:.3f} s, status {bare['status']:.3f} s, "
        f"power on {bare['on']:.3f} s"
    )
    print(f"  every BMC-fence run: {[run['fence_detail'] for run in runs['BMC fence']][:1]}")
    results = {
        "meta": {**run_meta(), "total_seconds": round(time.monotonic() - started, 1), "load_wait": load},
        "replication": replicated,
        "runs": runs,
        "medians": medians,
        "added_seconds": round(added, 3),
        "fence_step_median": fence_own,
        "bare_ipmitool": bare,
        "target_seconds": TARGET_SECONDS,
    }
    write_results(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
