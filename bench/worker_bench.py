"""Benchmark: runs through facility workers (lab control site, PostgreSQL, process pools).

The lab's workers are the product's warm workers (``python -m hotspare.warm_worker``): each run
forked from a pre-imported process, the pool polled when a run is scheduled in it.

1. Submission latency: from `run_deployment` returning (the run created through the API) to the
   run PENDING (a worker took it) and RUNNING (its process started the flow), N times.
2. Failover RTO: prod-east failed, then an emergency failover of app1 submitted to west's
   worker vs the same failover in this process; both until app1 answers through DNS from
   mirror-west (watched from the failure on, alongside the run). The lab is reset between runs.
   Target: through the worker ≤ 1.2 × in process (medians of the same run).

The anchor for the start: the same worker starting the same runs the classic way (the job
variable ``command`` set to ``python -m prefect.engine``, which a warm worker hands to Prefect's
own process starter: a new interpreter per run), alternated with the warm runs.

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
CLASSIC = "python -m prefect.engine"  # a run with this job command starts the classic way


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
        os.environ.update(control.client_environment(self.lab))
        import prefect.context

        prefect.context.refresh_global_settings_context()  # Prefect read its settings at an earlier import
        from flows.replicate import replicate_service
        from hotspare import access
        from hotspare.cli import main as cli
        from hotspare.commands.deploy_commands import deploy_to_pools

        self.lab.register_blocks()
        assert cli(["fleet", "load", self.env["fleet_file"]]) == 0
        clock = time.monotonic()
        deploy_to_pools(access.loaded_fleet(), ["control", "east", "west"], flows=["failover"])
        deploy_seconds = time.monotonic() - clock
        print(f"deployed failover to 3 pools in {deploy_seconds:.1f} s", flush=True)
        assert replicate_service(SERVICE)["outcome"] == "ok"
        latency, classic_latency = [], []
        for _ in range(self.args.submissions):
            latency.append(self.submission())
            classic_latency.append(self.submission(classic=True))
        through_worker, classic_worker, in_process = [], [], []
        for _ in range(self.args.runs):  # alternated, so a change in the machine's load hits all alike
            through_worker.append(self.failover_rto(worker=True))
            classic_worker.append(self.failover_rto(worker=True, classic=True))
            in_process.append(self.failover_rto(worker=False))
        summary = {
            "control_site_seconds": round(site_seconds, 1),
            "deploy_seconds": round(deploy_seconds, 1),
            "submission_to_taken": describe([run["taken"] for run in latency]),
            "submission_to_running": describe([run["running"] for run in latency]),
            "classic_submission_to_running": describe([run["running"] for run in classic_latency]),
            "rto_through_worker": describe([run["rto"] for run in through_worker]),
            "rto_through_worker_classic_start": describe([run["rto"] for run in classic_worker]),
            "rto_in_process": describe([run["rto"] for run in in_process]),
        }
        print(table(summary), flush=True)
        return {
            "summary": summary,
            "through_worker": through_worker,
            "classic_worker": classic_worker,
            "in_process": in_process,
            "latency": latency,
            "classic_latency": classic_latency,
        }

    def submission(self, classic: bool = False) -> dict:
        """Seconds from the run's creation through the API to PENDING (a worker took it) and to
        RUNNING (its process started the flow) on west's worker."""
        from prefect.client.orchestration import get_client
        from prefect.deployments import run_deployment

        flow_run = run_deployment(
            "failover/failover@west",
            parameters={"service": SERVICE, "dry_run": True},
            timeout=0,
            job_variables={"command": CLASSIC} if classic else None,
        )
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
        print(
            f"  submission{' (classic start)' if classic else ''} -> taken by a worker {picked:.2f} s, "
            f"running {seen['RUNNING']:.2f} s",
            flush=True,
        )
        return {"taken": round(picked, 3), "running": round(seen["RUNNING"], 3)}

    def failover_rto(self, worker: bool, classic: bool = False) -> dict:
        """prod-east fails at t0; RTO = until app1 answers through DNS from mirror-west, watched
        alongside the run (not after it returned), so both ways are timed at the same moment."""
        import threading

        from flows.failover import failover
        from hotspare.commands.deploy_commands import submit

        self.reset()
        self.lab.fail(self.production)
        t0 = time.time()
        answered: list[float] = []
        watcher = threading.Thread(target=lambda: answered.append(self.wait_answer_through_dns(300)), daemon=True)
        watcher.start()
        if worker:
            from hotspare.commands import deploy_commands

            environment = deploy_commands.operator_environment
            if classic:  # the run's job variables name the classic command (bench only)
                deploy_commands.operator_environment = lambda deployment: {**environment(deployment), "command": CLASSIC}
            try:
                outcome = submit("failover", {"service": SERVICE, "yes": True}, timeout=600)
            finally:
                deploy_commands.operator_environment = environment
            ok = outcome["state"] == "COMPLETED"
        else:
            outcome = failover(SERVICE, yes=True)
            ok = outcome["outcome"] == "ok"
        returned = time.time() - t0
        if not ok:
            raise RuntimeError(f"failover did not succeed: {outcome}")
        watcher.join(60)
        if not answered:
            raise RuntimeError("app1 never answered through DNS from the mirror")
        rto = answered[0] - t0
        phases = self.phases(outcome["flow_run"], t0, answered[0]) if worker else {}
        way = ("through west worker, classic start" if classic else "through west worker") if worker else "in process"
        print(f"  failover {way}: RTO {rto:.2f} s (run returned after {returned:.2f} s){phases.get('sentence', '')}", flush=True)
        return {
            "rto": round(rto, 3),
            "returned": round(returned, 3),
            "phases": phases,
            "worker": outcome.get("worker") if worker else "in process",
        }

    def phases(self, flow_run_id: str, t0: float, answered: float) -> dict:
        """Where a worker's failover spent its time, from the server's record of the run: the
        failure to the run created (``hotspare run``'s checks), created to Running (the worker's
        poll or push, its bookkeeping, the process start, Prefect's engine before the flow), and
        Running to users served (the flow itself)."""
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            run = client.read_flow_run(flow_run_id)
        created, running = run.created.timestamp(), run.start_time.timestamp()
        phases = {
            "to_created": round(created - t0, 2),
            "created_to_running": round(running - created, 2),
            "running_to_served": round(answered - running, 2),
        }
        phases["sentence"] = (
            f": submit {phases['to_created']:.2f} s, start {phases['created_to_running']:.2f} s, "
            f"flow to users served {phases['running_to_served']:.2f} s"
        )
        return phases

    def wait_answer_through_dns(self, seconds: float) -> float:
        from hotspare.adapters import dns
        from hotspare.probes import http_get_via_dns

        server = dns.AuthoritativeServer(self.env["zone"], self.env["dns"]["address"], self.env["dns"]["port"])
        url = f"http://{self.env['services'][SERVICE]['dns_name']}:{self.env['services'][SERVICE]['app_port']}/health.txt"

        def mirror_only(name: str) -> list[str]:
            # no HTTP probe of the old, blackholed address: its 5 s connect timeout would make the
            # watcher see the cutover up to 5 s late
            addresses = dns.read_addresses(server, name)
            if addresses[:1] != [self.mirror_address]:
                raise ConnectionError(f"{name} still answers {addresses}")
            return addresses

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                status, _body, used = http_get_via_dns(url, mirror_only, timeout=2.0)
                if status == 200 and used == self.mirror_address:
                    return time.time()
            except Exception:  # noqa: BLE001, S110  # not answering yet is what is being timed
                pass
            time.sleep(0.05)
        return float("inf")

    def reset(self) -> None:
        """app1 back on prod-east -> mirror-west, protected (the quick way, as the tests do)."""
        import subprocess

        from hotspare import access
        from hotspare.adapters import dns
        from hotspare.inventory.db import session
        from hotspare.inventory.models import ServerRow, ServiceRow
        from hotspare.lab.remote import ssh_argv

        self.lab.heal("east")
        access.close_connections()
        for host in (self.production, self.mirror):
            argv = ssh_argv(
                Path(self.env["ssh"]["key"]),
                Path(self.env["ssh"]["known_hosts"]),
                self.env["hosts"][host]["address"],
                [[f"/srv/{SERVICE}/app/ctl", "start"]],
            )
            subprocess.run(argv, check=True, capture_output=True, timeout=60)
        marker = Path(self.env["hosts"][self.mirror]["root"]) / f"srv/hotspare/{SERVICE}/active-copy"
        marker.unlink(missing_ok=True)
        fleet = access.loaded_fleet()
        zone = fleet.zone(self.env["zone"])
        server = dns.AuthoritativeServer(self.env["zone"], self.env["dns"]["address"], self.env["dns"]["port"])
        name = self.env["services"][SERVICE]["dns_name"]
        [current] = dns.read_addresses(server, name)
        if current != self.prod_address:
            dns.compare_and_swap_address(server, access.tsig_key(zone.tsig_key_block), name, current, self.prod_address, zone.ttl)
        with session() as db:
            row = db.get(ServiceRow, SERVICE)
            row.active_server, row.mirror_server, row.state, row.failover = self.production, self.mirror, "protected", None
            row.lock_holder = row.lock_expires = None
            for host in (self.production, self.mirror):
                db.get(ServerRow, host).state = "ok"


def describe(values: list[float]) -> dict:
    return {
        "n": len(values),
        "median": round(statistics.median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


def table(summary: dict) -> str:
    lines = [f"{'measure':<34} {'n':>3} {'median s':>9} {'min s':>7} {'max s':>7}"]
    for key in (
        "submission_to_taken",
        "submission_to_running",
        "classic_submission_to_running",
        "rto_through_worker",
        "rto_through_worker_classic_start",
        "rto_in_process",
    ):
        row = summary[key]
        lines.append(f"{key:<34} {row['n']:>3} {row['median']:>9.2f} {row['min']:>7.2f} {row['max']:>7.2f}")
    ratio = summary["rto_through_worker"]["median"] / summary["rto_in_process"]["median"]
    lines.append(f"worker / in process (median RTO): {ratio:.2f}x   target <= 1.20x: {'met' if ratio <= 1.2 else 'NOT met'}")
    lines.append(
        f"start latency, submitted -> Running on west's worker: median "
        f"{summary['submission_to_running']['median']:.2f} s warm, "
        f"{summary['classic_submission_to_running']['median']:.2f} s classic (a new interpreter per run)"
    )
    classic = summary["rto_through_worker_classic_start"]["median"] / summary["rto_in_process"]["median"]
    lines.append(f"classic start / in process (median RTO): {classic:.2f}x")
    lines.append(
        f"control site + workers up: {summary['control_site_seconds']} s; "
        f"failover deployed to 3 pools: {summary['deploy_seconds']} s"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
