"""Benchmark: losing a whole facility. Prints tables; not a test.

    sudo .venv/bin/python bench/facility_bench.py                 # 3 cycles + planner scaling (~3-5 min)
    sudo .venv/bin/python bench/facility_bench.py --runs 1 --sizes 10,100 --slot 6

1. MEASURED on a real lab (its own lab on a free slot or ``--slot``, temporary HOTSPARE_HOME,
   Prefect test server): per cycle, ``lab.fail("east")``, then ``facility_failover("east",
   yes=True)`` (approved up front, so the clock starts at approval), then ``lab.heal("east")``,
   ``facility_return("east")`` and the failback it offers (``failover("app1", planned=True)``).
   East holds app1's production (it moves to mirror-west) and app2's mirror (app2 keeps running,
   unprotected, then gets its mirror back). Reported: the whole facility failover call (gathering
   the facts and planning come before approval; the users-via-DNS time counts from the call), each
   service's time from approval until its failover returned ("on its mirror") and its RTO
   (sum of its failover steps), when users first got app1 from the mirror through DNS (a prober
   resolving at the lab's authoritative DNS every 50 ms and GETting the health URL), the return
   and the failback. Target: every service of the facility on its mirror within 30 s of approval.

2. SIMULATED scaling: the pure planner (``plan_facility_failover``) over N synthetic services
   (tiers 1-4 at random, each depending on up to two earlier ones, each with a synthetic
   failover plan from ``plan_failover``): planning time, waves, digest, plan size. Then an
   ESTIMATE, not a measurement, of the facility failover's duration: per wave, ceil(n / P)
   rounds of the per-service time measured in part 1 — it assumes parallel failovers do not slow
   each other, which on a 2-core machine they do (SSH handshakes and rsync share the CPUs).
Writes bench/out/facility.json.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import isolate_environment, lab_and_prefect, run_meta, table, write_results

TARGET_SECONDS = 30.0
OUT = ROOT / "bench" / "out" / "facility.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="facility failover + return + failback cycles (default 3)")
    parser.add_argument("--sizes", default="10,100,1000,5000", help="simulated fleet sizes for the planner")
    parser.add_argument("--parallelism", default="1,4,16", help="parallelism values for the estimate")
    parser.add_argument("--slot", type=int, default=None, help="lab slot (default: a free one)")
    parser.add_argument("--no-lab", action="store_true", help="only the simulated part (uses --per-service-seconds)")
    parser.add_argument("--per-service-seconds", type=float, default=None, help="per-service time for the estimate")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    args = parser.parse_args()
    started = time.monotonic()
    results: dict = {"meta": run_meta()}
    if not args.no_lab:
        home = Path(tempfile.mkdtemp(prefix="hotspare-facility-bench."))
        isolate_environment(home)
        with lab_and_prefect(home, args.slot, args.keep, started) as (lab, env):
            results["lab"] = measure_lab(lab, env, args.runs)
    per_service = args.per_service_seconds or (results.get("lab", {}).get("median_since_approval_seconds") or 10.0)
    results["simulated"] = simulate(
        [int(n) for n in args.sizes.split(",")], [int(p) for p in args.parallelism.split(",")], per_service
    )
    results["meta"]["total_seconds"] = round(time.monotonic() - started, 1)
    write_results(results, OUT)
    return 0


class Prober(threading.Thread):
    """First moment app1's name resolves to ``address`` and its health URL answers 2xx there."""

    def __init__(self, env: dict, address: str) -> None:
        super().__init__(daemon=True)
        self.env, self.address, self.seen_at, self.stop = env, address, None, threading.Event()

    def run(self) -> None:
        from hotspare.adapters import dns
        from hotspare.probes import http_get_via_dns

        server = dns.AuthoritativeServer(self.env["zone"], self.env["dns"]["address"], self.env["dns"]["port"], 2.0)
        spec = self.env["services"]["app1"]
        url = f"http://{spec['dns_name']}:{spec['app_port']}/health.txt"
        while not self.stop.is_set():
            try:
                if dns.read_addresses(server, spec["dns_name"]) == [self.address]:
                    status, _body, _used = http_get_via_dns(url, lambda _name: [self.address], timeout=2)
                    if 200 <= status < 300:
                        self.seen_at = time.monotonic()
                        return
            except Exception:  # noqa: BLE001 (a probe that fails is just "not yet")
                pass
            self.stop.wait(0.05)


def measure_lab(lab, env: dict, runs: int) -> dict:
    from flows.facility import facility_failover, facility_return
    from flows.failover import failover
    from flows.replicate import replicate_service
    from hotspare import access
    from hotspare.cli import main as cli

    lab.register_blocks()
    if cli(["fleet", "load", env["fleet_file"]]) != 0:
        raise RuntimeError("hotspare fleet load failed")
    for service in ("app1", "app2"):
        replicate_service(service)
    mirror = env["hosts"]["mirror-west"]["address"]
    cycles = []
    for index in range(runs):
        access.close_connections()
        lab.fail("east")
        prober = Prober(env, mirror)
        prober.start()
        t0 = time.monotonic()
        result = facility_failover("east", yes=True)
        call = time.monotonic() - t0
        prober.join(timeout=30)
        prober.stop.set()
        app1 = result["results"]["app1"]
        lab.heal("east")
        access.close_connections()
        t1 = time.monotonic()
        back = facility_return("east")
        returned = time.monotonic() - t1
        t2 = time.monotonic()
        failback = failover("app1", planned=True, yes=True)
        failed_back = time.monotonic() - t2
        cycle = {
            "run": index + 1,
            "facility_call_seconds": round(call, 2),
            "approval_to_all_done_seconds": result["total_seconds"],
            "app1_since_approval_seconds": app1["since_approval_seconds"],
            "app1_rto_seconds": app1["rto_seconds"],
            "app1_users_served_from_mirror_seconds": round(prober.seen_at - t0, 2) if prober.seen_at else None,
            "unprotected": result["unprotected"],
            "return_seconds": round(returned, 2),
            "return_outcomes": {name: item["outcome"] for name, item in back["results"].items()},
            "failback_seconds": round(failed_back, 2),
            "failback_rto_seconds": failback.get("rto_seconds"),
        }
        cycles.append(cycle)
        print(f"cycle {index + 1}: {cycle}", flush=True)
    print("\nFacility failover of east (measured; approval up front, the clock starts at approval):")
    table(
        (
            "run",
            "flow call s",
            "approval->all on mirror s",
            "app1 on mirror s",
            "app1 RTO s",
            "users via DNS s (from call)",
            "return s",
            "failback s",
        ),
        [
            (
                c["run"],
                c["facility_call_seconds"],
                c["approval_to_all_done_seconds"],
                c["app1_since_approval_seconds"],
                c["app1_rto_seconds"],
                c["app1_users_served_from_mirror_seconds"],
                c["return_seconds"],
                c["failback_seconds"],
            )
            for c in cycles
        ],
    )
    median = statistics.median(c["approval_to_all_done_seconds"] for c in cycles)
    worst = max(c["approval_to_all_done_seconds"] for c in cycles)
    print(
        f"  median {median:.1f} s, worst {worst:.1f} s; target {TARGET_SECONDS:.0f} s: "
        f"{'met' if worst <= TARGET_SECONDS else 'MISSED'}"
    )
    return {
        "cycles": cycles,
        "median_approval_to_all_done_seconds": median,
        "worst_seconds": worst,
        "median_since_approval_seconds": statistics.median(c["app1_since_approval_seconds"] for c in cycles),
        "target_seconds": TARGET_SECONDS,
        "target_met": worst <= TARGET_SECONDS,
    }


def synthetic_standings(count: int, rng: random.Random):
    """``count`` services all produced in east (mirrors in west), with tiers and dependencies."""
    from hotspare.planning.facility import ServiceStanding
    from hotspare.planning.failover import CopyChoice, ServiceFacts, plan_failover

    now = datetime(2030, 1, 1, tzinfo=timezone.utc)
    standings = []
    for index in range(count):
        name = f"svc{index:05d}"
        production, mirror = f"p{index % 50}", f"m{index % 50}"
        facts = ServiceFacts(
            service=name,
            state="protected",
            active_server=production,
            mirror_server=mirror,
            dns_name=f"{name}.test",
            addresses={production: "10.0.0.1", mirror: "10.0.1.1"},
            dns_answer=["10.0.0.1"],
            copies=[CopyChoice(f"{name}-c", "verified", now - timedelta(hours=2), "/srv/hotspare/x")],
        )
        depends = tuple(sorted({f"svc{rng.randrange(index):05d}" for _ in range(rng.randrange(3))})) if index else ()
        standings.append(
            ServiceStanding(
                service=name,
                tier=rng.randint(1, 4),
                depends_on=depends,
                state="protected",
                production=production,
                production_facility="east",
                mirror=mirror,
                mirror_facility="west",
                failover_plan=plan_failover(facts, planned=False, now=now),
            )
        )
    return standings


def simulate(sizes: list[int], parallelisms: list[int], per_service_seconds: float) -> dict:
    from hotspare.planning.facility import plan_facility_failover

    rng = random.Random(7)
    rows, estimates = [], []
    for size in sizes:
        t0 = time.perf_counter()
        standings = synthetic_standings(size, rng)
        built = time.perf_counter() - t0
        t1 = time.perf_counter()
        plan = plan_facility_failover("east", standings, {"standby-west": "west"}, parallelism=4)
        planned = time.perf_counter() - t1
        t2 = time.perf_counter()
        digest, markdown = plan.digest, plan.markdown()
        rendered = time.perf_counter() - t2
        rows.append(
            {
                "services": size,
                "service_plans_ms": round(built * 1000, 1),
                "facility_plan_ms": round(planned * 1000, 1),
                "digest_and_markdown_ms": round(rendered * 1000, 1),
                "waves": len(plan.waves),
                "markdown_kb": round(len(markdown) / 1024, 1),
                "digest": digest,
            }
        )
        for parallelism in parallelisms:
            rounds = sum(math.ceil(len(wave.moves) / parallelism) for wave in plan.waves)
            estimates.append(
                {
                    "services": size,
                    "parallelism": parallelism,
                    "rounds": rounds,
                    "estimated_seconds": round(rounds * per_service_seconds, 1),
                }
            )
    print("\nPure planner over SIMULATED services (synthetic facts, no lab):")
    table(
        ("services", "service plans ms", "facility plan ms", "digest+markdown ms", "waves", "markdown KiB"),
        [
            (
                r["services"],
                r["service_plans_ms"],
                r["facility_plan_ms"],
                r["digest_and_markdown_ms"],
                r["waves"],
                r["markdown_kb"],
            )
            for r in rows
        ],
    )
    print(
        f"\nESTIMATED facility failover duration (simulated: rounds x {per_service_seconds:.1f} s per service measured "
        "in the lab; assumes parallel failovers do not slow each other):"
    )
    table(
        ("services", "parallelism", "rounds", "estimated s"),
        [(e["services"], e["parallelism"], e["rounds"], e["estimated_seconds"]) for e in estimates],
    )
    return {
        "planner": rows,
        "estimates": estimates,
        "per_service_seconds": per_service_seconds,
        "note": "simulated: synthetic services through the pure planner; durations are estimates, not measurements",
    }


if __name__ == "__main__":
    sys.exit(main())
