"""Benchmark: runs through facility workers (lab control site, PostgreSQL, process pools).

1. Submission latency: from `run_deployment` returning (the run created through the API) to the
   run RUNNING on a worker (the worker's poll, the pull step, the process start), N times.
2. Failover RTO: prod-east failed, then an emergency failover of app1 submitted to west's
   worker vs the same failover in this process; both until app1 answers through DNS from
   mirror-west. The lab is reset between runs.

    .venv/bin/python bench/worker_bench.py [--slot N] [--submissions 5] [--runs 2] [--keep]

Prints a table; writes bench/out/worker_bench.json. Starts its own lab on a free slot (root).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import isolate_environment, start_lab  # noqa: E402

SERVICE = "app1"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slot", type=int, default=None)
    parser.add_argument("--submissions", type=int, default=5)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="leave the lab up at the end")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="hotspare-worker-bench."))
    isolate_environment(home)
    started = time.monotonic()
    lab, env = start_lab(home / "lab", args.slot)
    try:
        print(f"lab up in slot {lab.slot} in {time.monotonic() - started:.1f} s", flush=True)
        results = Bench(lab, env, args).run()
    finally:
        if not args.keep:
            lab.down()
    out = ROOT / "bench" / "out" / "worker_bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results in {out}")
    return 0


class Bench:
    def __init__(self, lab, env: dict, args) -> None:
        self.lab, self.env, self.args = lab, env, args
        service = env["services"][SERVICE]
        self.production, self.mirror = service["production"], service["mirror"]
        self.prod_address = env["hosts"][self.production]["address"]
        self.mirror_address = env["hosts"][self.mirror]["address"]

    def run(self) -> dict:
        import os

        from hotspare.lab import control
        from hotspare.lab.workers import start_workers

        clock = time.monotonic()
        start_workers(self.lab)
        site_seconds = time.monotonic() - clock
        print(f"control site + 3 workers ONLINE in {site_seconds:.1f} s", flush=True)
        os.environ.update(control.client_environment(self.lab))  # before Prefect reads its settings
        from flows.replicate import replicate_service
        from hotspare.cli import main as cli
        from hotspare.commands.deploy_commands import deploy_to_pools
        from hotspare import access

        self.lab.register_blocks()
        assert cli(["fleet", "load", self.env["fleet_file"]]) == 0
        clock = time.monotonic()
        deploy_to_pools(access.loaded_fleet(), ["control", "east", "west"], flows=["failover"])
        deploy_seconds = time.monotonic() - clock
        print(f"deployed failover to 3 pools in {deploy_seconds:.1f} s", flush=True)
        assert replicate_service(SERVICE)["outcome"] == "ok"
        latency = [self.submission() for _ in range(self.args.submissions)]
        through_worker = [self.failover_rto(worker=True) for _ in range(self.args.runs)]
        in_process = [self.failover_rto(worker=False) for _ in range(self.args.runs)]
        summary = {"control_site_seconds": round(site_seconds, 1), "deploy_seconds": round(deploy_seconds, 1),
                   "submission_to_taken": describe([run["taken"] for run in latency]),
                   "submission_to_running": describe([run["running"] for run in latency]),
                   "rto_through_worker": describe([run["rto"] for run in through_worker]),
                   "rto_in_process": describe([run["rto"] for run in in_process])}
        print(table(summary), flush=True)
        return {"summary": summary, "through_worker": through_worker, "in_process": in_process, "latency": latency}

    def submission(self) -> dict:
        """Seconds from the run's creation through the API to PENDING (a worker took it) and to
        RUNNING (its process started the flow) on west's worker."""
        from prefect.client.orchestration import get_client
        from prefect.deployments import run_deployment

        flow_run = run_deployment("failover/failover@west", parameters={"service": SERVICE, "dry_run": True},
                                  timeout=0)
        created = time.time()
        seen: dict[str, float] = {}
        with get_client(sync_client=True) as client:
            while "RUNNING" not in seen:
                state = client.read_flow_run(flow_run.id).state
                kind = state.type.value if state else ""
                if kind in ("PENDING", "RUNNING"):
                    seen.setdefault(kind, time.time() - created)
                if kind in ("COMPLETED", "FAILED", "CRASHED"):
                    seen.setdefault("RUNNING", time.time() - created)
                time.sleep(0.05)
            while not client.read_flow_run(flow_run.id).state.is_final():
                time.sleep(0.2)
        picked = seen.get("PENDING", seen["RUNNING"])
        print(f"  submission -> taken by a worker {picked:.2f} s, running {seen['RUNNING']:.2f} s", flush=True)
        return {"taken": round(picked, 3), "running": round(seen["RUNNING"], 3)}

    def failover_rto(self, worker: bool) -> dict:
        """prod-east fails at t0; RTO = until app1 answers through DNS from mirror-west."""
        from flows.failover import failover
        from hotspare.commands.deploy_commands import submit

        self.reset()
        self.lab.fail(self.production)
        t0 = time.time()
        if worker:
            outcome = submit("failover", {"service": SERVICE, "yes": True}, timeout=600)
            ok = outcome["state"] == "COMPLETED"
        else:
            outcome = failover(SERVICE, yes=True)
            ok = outcome["outcome"] == "ok"
        if not ok:
            raise RuntimeError(f"failover did not succeed: {outcome}")
        answered = self.wait_answer_through_dns(60)
        rto = answered - t0
        print(f"  failover {'through west worker' if worker else 'in process'}: RTO {rto:.2f} s", flush=True)
        return {"rto": round(rto, 3), "worker": outcome.get("worker") if worker else "in process"}

    def wait_answer_through_dns(self, seconds: float) -> float:
        from hotspare.adapters import dns
        from hotspare.probes import http_get_via_dns

        server = dns.AuthoritativeServer(self.env["zone"], self.env["dns"]["address"], self.env["dns"]["port"])
        url = f"http://{self.env['services'][SERVICE]['dns_name']}:{self.env['services'][SERVICE]['app_port']}/health.txt"
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                status, _body, used = http_get_via_dns(url, lambda name: dns.read_addresses(server, name))
                if status == 200 and used == self.mirror_address:
                    return time.time()
            except Exception:
                pass
            time.sleep(0.05)
        raise RuntimeError("app1 never answered through DNS from the mirror")

    def reset(self) -> None:
        """app1 back on prod-east -> mirror-west, protected (the quick way, as the tests do)."""
        from hotspare import access
        from hotspare.adapters import dns
        from hotspare.inventory.db import session
        from hotspare.inventory.models import ServerRow, ServiceRow
        from hotspare.lab.remote import ssh_argv

        import subprocess

        self.lab.heal("east")
        access.close_connections()
        for host in (self.production, self.mirror):
            argv = ssh_argv(Path(self.env["ssh"]["key"]), Path(self.env["ssh"]["known_hosts"]),
                            self.env["hosts"][host]["address"], [[f"/srv/{SERVICE}/app/ctl", "start"]])
            subprocess.run(argv, check=True, capture_output=True, timeout=60)
        marker = Path(self.env["hosts"][self.mirror]["root"]) / f"srv/hotspare/{SERVICE}/active-copy"
        marker.unlink(missing_ok=True)
        fleet = access.loaded_fleet()
        zone = fleet.zone(self.env["zone"])
        server = dns.AuthoritativeServer(self.env["zone"], self.env["dns"]["address"], self.env["dns"]["port"])
        name = self.env["services"][SERVICE]["dns_name"]
        [current] = dns.read_addresses(server, name)
        if current != self.prod_address:
            dns.compare_and_swap_address(server, access.tsig_key(zone.tsig_key_block), name, current,
                                         self.prod_address, zone.ttl)
        with session() as db:
            row = db.get(ServiceRow, SERVICE)
            row.active_server, row.mirror_server, row.state, row.failover = self.production, self.mirror, "protected", None
            row.lock_holder = row.lock_expires = None
            for host in (self.production, self.mirror):
                db.get(ServerRow, host).state = "ok"


def describe(values: list[float]) -> dict:
    return {"n": len(values), "median": round(statistics.median(values), 2), "min": round(min(values), 2),
            "max": round(max(values), 2)}


def table(summary: dict) -> str:
    lines = [f"{'measure':<34} {'n':>3} {'median s':>9} {'min s':>7} {'max s':>7}"]
    for key in ("submission_to_taken", "submission_to_running", "rto_through_worker", "rto_in_process"):
        row = summary[key]
        lines.append(f"{key:<34} {row['n']:>3} {row['median']:>9.2f} {row['min']:>7.2f} {row['max']:>7.2f}")
    lines.append(f"control site + workers up: {summary['control_site_seconds']} s; "
                 f"failover deployed to 3 pools: {summary['deploy_seconds']} s")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
