"""Benchmark: how long a failover takes, step by step, against a real lab. Prints tables; not a test.

    sudo .venv/bin/python bench/failover_bench.py                      # 5 emergency runs + 1 GB switchover (~1.5-2 min once the machine is quiet)
    sudo .venv/bin/python bench/failover_bench.py --runs 2 --size-mb 20 --files 200 --quiet-wait 0   # dry run

Starts its own lab (a free slot, in a temporary folder, torn down at the end), a temporary
HOTSPARE_HOME and a Prefect test server, saves the lab's blocks and loads its fleet. Before
that it waits (bounded, ``--quiet-wait``) until the 1-minute load average is below
``--max-load``: other benchmarks on a shared machine distort every number here.

1. Emergency failover of app1 (``--runs`` times). One replication first, so a verified copy
   exists; then per run: ``lab.fail("prod-east")``, start the clock, ``failover("app1",
   yes=True)`` (approved up front: no approval wait). An independent prober in this process
   resolves app1's name at the lab's authoritative DNS every 50 ms and, once the answer is the
   mirror's address, GETs the health URL there: the first 2xx is when users are served again.
   The clock stops when the app answers through the DNS name at the new address *and* the flow
   call has returned (the prober runs once more after the return if it had not seen it yet).
   Between runs the layout is put back the quick way (heal, app stopped on mirror-west and
   started on prod-east, the mirror's ``active-copy`` marker removed, DNS compare-and-swap back,
   inventory row back), the same way tests/test_failover.py's ``reset_layout`` does it.
   SSH connections pooled by the orchestrator are closed before each run, as for a failover
   started in a fresh process or long after the last replication; ``--warm-pool-run`` adds one
   run where production's pooled connection was used just before the outage (see the report).

2. Planned switchover with a large data set: ``--files`` random files (default 10,000 x
   100 KiB = 1 GB, 100 per folder) written straight into prod-east's app1 data folder (its
   ``root`` on this machine), one replication (full copy), 1 % of the files rewritten, then
   ``failover("app1", planned=True, yes=True)``: lower TTL, stop the app, final sync + verify,
   activation of the copy, health check, DNS cutover, check through DNS, inventory, and the
   automatic reprotect (a subflow replicating mirror-west back to prod-east) at the end. The
   switchover is reported until its "inventory" step; the reprotect separately.

Step times come from the inventory (``runs.step_timings`` of each RunRow); the phases outside
the steps (flow run creation, gather facts and plan, approval, locks; run summary and flow exit)
from the flow call's wall clock and the Prefect API's flow and task runs. Every SSH connect and
remote command of the flows is recorded in this process (a wrapper around the SSH adapter's
methods; no hotspare code changes) and attributed to the steps. Writes bench/out/failover.json.
``--no-heartbeats`` runs the flows with Prefect's flow-run heartbeat thread off, to show what it
costs: every flow run's exit joins that thread, which sleeps in 1 s steps (up to ~1 s per flow
level).
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (
    SshRecorder,
    by_label,
    epoch,
    isolate_environment,
    lab_and_prefect,
    rewrite_random_files,
    run_meta,
    ssh_argv,
    table,
    write_random_files,
    write_results,
)

SERVICE = "app1"
EMERGENCY_TARGET_SECONDS = 15.0
OUT = ROOT / "bench" / "out" / "failover.json"
PROBE_INTERVAL = 0.05


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="emergency failover runs (default 5)")
    parser.add_argument("--size-mb", type=int, default=1000, help="data set of the switchover in MiB (default 1000)")
    parser.add_argument("--files", type=int, default=10_000, help="number of files of the data set (default 10,000)")
    parser.add_argument("--change-percent", type=float, default=1.0, help="files rewritten before the switchover (default 1 %%)")
    parser.add_argument("--no-planned", action="store_true", help="skip the planned switchover")
    parser.add_argument(
        "--warm-pool-run",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one extra emergency run with a just-used pooled SSH connection to production (default on)",
    )
    parser.add_argument(
        "--no-heartbeats",
        action="store_true",
        help="run the flows with Prefect's flow-run heartbeats off (shows what the heartbeat thread costs at each flow exit)",
    )
    parser.add_argument(
        "--max-load", type=float, default=1.0, help="wait until the 1-min load average is below this (default 1.0)"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=600,
        help="wait at most this many seconds for a quiet machine (default 600; 0: don't wait)",
    )
    parser.add_argument("--slot", type=int, default=None, help="lab slot (default: a free one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (lab hosts, inventory)")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    if min(args.runs, args.files, args.size_mb) < 1 or not 0 < args.change_percent <= 100:
        parser.error("--runs, --files and --size-mb must be positive, --change-percent in (0, 100]")

    load = wait_for_quiet(args.max_load, args.quiet_wait)
    home = Path(tempfile.mkdtemp(prefix="hotspare-failover-bench."))
    isolate_environment(home)

    started = time.monotonic()
    with lab_and_prefect(home, args.slot, args.keep, started) as (lab, env):
        print(f"Prefect test server up after {time.monotonic() - started:.1f} s", flush=True)
        from contextlib import nullcontext

        from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

        heartbeats = (
            temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}) if args.no_heartbeats else nullcontext()
        )
        with heartbeats:
            results = Bench(lab, env, args).run()
    results["meta"].update(total_seconds=round(time.monotonic() - started, 1), slot=lab.slot, load_wait=load)
    print_report(results)
    write_results(results, args.out)
    return 0


def wait_for_quiet(max_load: float, seconds: float) -> dict:
    """Wait (bounded) for the 1-minute load average to drop below ``max_load``."""
    started = time.monotonic()
    first = os.getloadavg()
    if seconds > 0 and first[0] >= max_load:
        print(f"load average {first[0]:.2f} >= {max_load}: waiting up to {seconds:.0f} s for a quieter machine", flush=True)
    while os.getloadavg()[0] >= max_load and time.monotonic() - started < seconds:
        time.sleep(10)
    waited = time.monotonic() - started
    now = os.getloadavg()
    quiet = now[0] < max_load
    if not quiet:
        print(
            f"WARNING: load average still {now[0]:.2f} after {waited:.0f} s; measuring anyway (numbers are pessimistic)",
            flush=True,
        )
    return {"first": first, "at_start": now, "waited_seconds": round(waited, 1), "quiet": quiet, "max_load": max_load}


# ---------------------------------------------------------------------------------------
# The app as users reach it: the name at the lab's authoritative DNS, then HTTP


class DnsProber:
    """Polls, in a thread, until the app answers through its DNS name at ``address``."""

    def __init__(self, bench: Bench, address: str) -> None:
        self.bench, self.address = bench, address
        self.answered_at: float | None = None
        self.dns_moved_at: float | None = None
        self.probes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dns-prober", daemon=True)

    def __enter__(self) -> DnsProber:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.is_set() and self.answered_at is None:
            self.probe_once()
            if self.answered_at is None:
                self._stop.wait(PROBE_INTERVAL)

    def probe_once(self) -> bool:
        self.probes += 1
        ok, moved = self.bench.answers_through_dns(self.address)
        now = time.time()
        if moved and self.dns_moved_at is None:
            self.dns_moved_at = now
        if ok and self.answered_at is None:
            self.answered_at = now
        return ok

    def wait(self, seconds: float) -> float | None:
        """After the flow returned: the answer time, probing once more ourselves if needed."""
        self._thread.join(seconds)
        if self.answered_at is None:
            deadline = time.time() + seconds
            while time.time() < deadline and not self.probe_once():
                time.sleep(PROBE_INTERVAL)
        return self.answered_at


# ---------------------------------------------------------------------------------------
# The benchmark


class Bench:
    def __init__(self, lab, env: dict, args) -> None:
        self.lab, self.env, self.args = lab, env, args
        service = env["services"][SERVICE]
        self.production, self.mirror = service["production"], service["mirror"]
        self.prod_address = env["hosts"][self.production]["address"]
        self.mirror_address = env["hosts"][self.mirror]["address"]
        self.dns_name = service["dns_name"]
        self.data_dir = Path(env["hosts"][self.production]["root"]) / service["data_path"].lstrip("/")
        self.recorder = SshRecorder()
        self.file_names: list[Path] = []

    # ----- helpers ----------------------------------------------------------------------

    def ssh(self, host: str, *command: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            ssh_argv(self.env, host, list(command)), capture_output=True, text=True, timeout=timeout, check=False
        )

    def must(self, host: str, *command: str) -> str:
        result = self.ssh(host, *command)
        if result.returncode != 0:
            raise RuntimeError(f"on {host}: {shlex.join(command)} exited {result.returncode}: {result.stderr.strip()[-300:]}")
        return result.stdout

    def lab_dns(self):
        from hotspare.adapters import dns

        return dns.AuthoritativeServer(self.env["zone"], self.env["dns"]["address"], self.env["dns"]["port"], 2.0)

    def dns_answer(self) -> list[str]:
        from hotspare.adapters import dns

        return dns.read_addresses(self.lab_dns(), self.dns_name)

    def answers_through_dns(self, address: str) -> tuple[bool, bool]:
        """(the health URL answers 2xx through the name at ``address``, the name points there)."""
        from hotspare.adapters import dns
        from hotspare.probes import http_get_via_dns

        try:
            answer = dns.read_addresses(self.lab_dns(), self.dns_name)
        except Exception:
            return False, False
        if answer != [address]:
            return False, False
        try:
            status, _body, used = http_get_via_dns(self.health_url, lambda _name: answer, timeout=1.0)
        except OSError:
            return False, True
        return 200 <= status < 300 and used == address, True

    def runs_since(self, run_id: int, kind: str | None = None) -> list:
        from sqlmodel import select

        from hotspare.inventory.db import session
        from hotspare.inventory.models import RunRow

        with session() as db:
            query = select(RunRow).where(RunRow.id > run_id, RunRow.service == SERVICE).order_by(RunRow.id)
            rows = db.exec(query).all()
            return [row.model_copy() for row in rows if kind is None or row.kind == kind]

    def last_run_id(self) -> int:
        from sqlmodel import func, select

        from hotspare.inventory.db import session
        from hotspare.inventory.models import RunRow

        with session() as db:
            return db.exec(select(func.max(RunRow.id))).one() or 0

    def step_rows(self, run_id: int) -> list[dict]:
        """The run's steps with wall-clock start/end (epoch) and seconds, in order."""
        from sqlmodel import select

        from hotspare.inventory.db import session
        from hotspare.inventory.models import StepRow

        with session() as db:
            rows = db.exec(select(StepRow).where(StepRow.run_id == run_id).order_by(StepRow.id)).all()
            return [
                {
                    "step": row.name,
                    "start": epoch(row.started_at),
                    "end": epoch(row.ended_at),
                    "seconds": round(epoch(row.ended_at) - epoch(row.started_at), 3) if row.ended_at else None,
                    "outcome": row.outcome,
                    "detail": row.detail,
                }
                for row in rows
            ]

    def ssh_breakdown(self, start: float, end: float) -> dict:
        events = self.recorder.between(start, end, slack=0.01)
        return by_label((f"{event['label']} @{event['host']}", event["end"] - event["start"]) for event in events)

    def with_ssh(self, steps: list[dict]) -> list[dict]:
        for step in steps:
            step["ssh"] = self.ssh_breakdown(step["start"], step["end"]) if step["end"] else {}
        return steps

    # ----- set-up and the quick way back --------------------------------------------------

    def setup(self) -> None:
        from hotspare import access
        from hotspare.cli import main as cli

        self.lab.register_blocks()
        if cli(["fleet", "load", self.env["fleet_file"]]) != 0:
            raise RuntimeError("hotspare fleet load failed")
        fleet = access.loaded_fleet()
        self.health_url = fleet.service(SERVICE).health_url
        self.recorder.install()

    def reset_layout(self) -> float:
        """app1 back on prod-east -> mirror-west, protected: healed hosts, the app running on
        production only, no activation marker on the mirror, DNS and inventory as before."""
        from hotspare import access
        from hotspare.adapters import dns
        from hotspare.inventory.db import session
        from hotspare.inventory.models import ServerRow, ServiceRow

        started = time.perf_counter()
        self.lab.heal("east")
        self.lab.heal("west")
        access.close_connections()
        self.must(self.mirror, f"/srv/{SERVICE}/app/ctl", "stop")
        self.must(self.production, f"/srv/{SERVICE}/app/ctl", "start")
        marker = Path(self.env["hosts"][self.mirror]["root"]) / f"srv/hotspare/{SERVICE}/active-copy"
        marker.unlink(missing_ok=True)
        fleet = access.loaded_fleet()
        zone = fleet.zone(self.env["zone"])
        [current] = self.dns_answer()
        if current != self.prod_address:
            dns.compare_and_swap_address(
                self.lab_dns(), access.tsig_key(zone.tsig_key_block), self.dns_name, current, self.prod_address, zone.ttl
            )
        with session() as db:
            row = db.get(ServiceRow, SERVICE)
            row.active_server, row.mirror_server, row.state, row.failover = self.production, self.mirror, "protected", None
            row.lock_holder = row.lock_expires = None
            for server in (self.production, self.mirror):
                db.get(ServerRow, server).state = "ok"
        if self.dns_answer() != [self.prod_address]:
            raise RuntimeError(f"reset: {self.dns_name} does not point to {self.prod_address}")
        if self.answers_through_dns(self.prod_address) != (True, True):
            raise RuntimeError("reset: the app does not answer on production through DNS")
        return time.perf_counter() - started

    def replicate(self) -> dict:
        from flows.replicate import replicate_service

        before = self.last_run_id()
        started = time.perf_counter()
        result = replicate_service(SERVICE)
        seconds = time.perf_counter() - started
        if result["outcome"] != "ok":
            raise RuntimeError(f"replication failed: {result}")
        [row] = self.runs_since(before, "replicate")
        return {
            "seconds": round(seconds, 3),
            "copy_id": result["copy_id"],
            "transfer": result["transfer"],
            "steps": {s["step"]: s["seconds"] for s in self.step_rows(row.id)},
        }

    # ----- 1. emergency failover --------------------------------------------------------------

    def emergency_run(self, index: int, warm_pool: bool = False) -> dict:
        from flows.failover import failover
        from hotspare import access

        access.close_connections()
        if warm_pool:
            # production's pooled connection used just now (e.g. a replication that just ended)
            with access.connect(access.loaded_fleet(), self.production) as connection:
                connection.run(["true"])
        before = self.last_run_id()
        self.lab.fail(self.production)
        t0 = time.time()
        clock = time.perf_counter()
        with DnsProber(self, self.mirror_address) as prober:
            result = failover(SERVICE, yes=True)
            flow_seconds = time.perf_counter() - clock
            returned = time.time()
            answered = prober.wait(30)
        if answered is None:
            raise RuntimeError(f"run {index}: the app never answered through DNS at {self.mirror_address}")
        if result["outcome"] != "ok":
            raise RuntimeError(f"run {index}: failover did not succeed: {result}")
        [row] = self.runs_since(before, "failover")
        steps = self.with_ssh(self.step_rows(row.id))
        first, last = steps[0], steps[-1]
        run = {
            "run": index,
            "warm_pool": warm_pool,
            "total": round(max(answered, returned) - t0, 3),
            "answers_through_dns": round(answered - t0, 3),
            "dns_moved": round(prober.dns_moved_at - t0, 3) if prober.dns_moved_at else None,
            "flow_call": round(flow_seconds, 3),
            "before_first_step": round(first["start"] - t0, 3),
            "after_last_step": round(returned - last["end"], 3),
            "steps": steps,
            "step_seconds": {s["step"]: s["seconds"] for s in steps},
            "rto_seconds_reported": result.get("rto_seconds"),
            "fenced": result.get("fencing", {}).get("fenced"),
            "fence_detail": result.get("fencing", {}).get("detail"),
            "copy_id": result.get("copy_id"),
            "flow_run_id": row.flow_run_id,
            "t0": t0,
            "probes": prober.probes,
            "ssh_before_first_step": self.ssh_breakdown(t0, first["start"]),
        }
        run["reset_seconds"] = round(self.reset_layout(), 3)
        print(
            f"  run {index}{' (warm pooled connection)' if warm_pool else ''}: answers through DNS after {run['answers_through_dns']:.2f} s, "
            f"flow returned after {run['flow_call']:.2f} s (fence {run['step_seconds'].get('fence production', 0):.2f} s, "
            f"before first step {run['before_first_step']:.2f} s); reset {run['reset_seconds']:.1f} s",
            flush=True,
        )
        return run

    def emergency(self) -> dict:
        self.reset_layout()
        replicated = self.replicate()
        print(f"replicated app1 once (copy {replicated['copy_id']}) in {replicated['seconds']:.2f} s", flush=True)
        runs = [self.emergency_run(index + 1) for index in range(self.args.runs)]
        warm = self.emergency_run(len(runs) + 1, warm_pool=True) if self.args.warm_pool_run else None
        self.prefect_phases([*runs, *([warm] if warm else [])])
        return {"replication": replicated, "runs": runs, "warm_pool_run": warm, "summary": summarize_emergency(runs)}

    def prefect_phases(self, runs: list[dict]) -> None:
        """From the Prefect API: when each flow run started and how long its tasks took.

        Task runs reach the server with a delay (batched recorder): poll until they settle."""
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        ids = [run["flow_run_id"] for run in runs if run.get("flow_run_id")]
        if not ids:
            return
        with get_client(sync_client=True) as client:
            deadline, previous, tasks = time.monotonic() + 20, -1, []
            while time.monotonic() < deadline:
                tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=200)
                finished = [t for t in tasks if t.end_time is not None]
                if len(finished) == len(tasks) and len(tasks) == previous:
                    break
                previous = len(tasks)
                time.sleep(1.0)
            flow_runs = {str(f.id): f for f in client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))}
        for run in runs:
            flow_run = flow_runs.get(run["flow_run_id"])
            mine = sorted(
                (t for t in tasks if str(t.flow_run_id) == run["flow_run_id"] and t.start_time), key=lambda t: t.start_time
            )
            run["prefect"] = {
                "flow_run_started_after": round(flow_run.start_time.timestamp() - run["t0"], 3)
                if flow_run and flow_run.start_time
                else None,
                "flow_run_ended_after": round(flow_run.end_time.timestamp() - run["t0"], 3)
                if flow_run and flow_run.end_time
                else None,
                "tasks": [
                    {
                        "task": t.name.rsplit("-", 1)[0],
                        "start_after": round(t.start_time.timestamp() - run["t0"], 3),
                        "seconds": round(t.end_time.timestamp() - t.start_time.timestamp(), 3) if t.end_time else None,
                    }
                    for t in mine
                ],
            }

    def flow_runs_since(self, t0: float) -> list[dict]:
        """Flow and subflow runs that started after ``t0``, as the Prefect API recorded them."""
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterStartTime
        from prefect.client.schemas.sorting import FlowRunSort

        after = datetime.fromtimestamp(t0 - 1, timezone.utc)
        with get_client(sync_client=True) as client:
            found = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=after)),
                sort=FlowRunSort.START_TIME_ASC,
                limit=50,
            )
            names = {flow.id: flow.name for flow in client.read_flows(limit=50)}
        return [
            {
                "flow": names.get(f.flow_id, str(f.flow_id)),
                "state": f.state_name,
                "start_after": round(f.start_time.timestamp() - t0, 3) if f.start_time else None,
                "end_after": round(f.end_time.timestamp() - t0, 3) if f.end_time else None,
            }
            for f in found
        ]

    # ----- 2. planned switchover with a large data set ---------------------------------------

    def generate(self) -> dict:
        started = time.perf_counter()
        size = self.args.size_mb * 2**20 // self.args.files
        self.file_names += write_random_files(self.data_dir / "bench", self.args.files, size)
        os.sync()
        return {
            "files": self.args.files,
            "file_bytes": size,
            "total_bytes": size * self.args.files,
            "seconds": round(time.perf_counter() - started, 1),
        }

    def change(self) -> int:
        count = max(1, round(len(self.file_names) * self.args.change_percent / 100))
        size = self.args.size_mb * 2**20 // self.args.files
        return rewrite_random_files(self.file_names, count, size, random.Random(20261125))

    def planned(self) -> dict:
        from flows.failover import failover
        from hotspare.inventory import copies

        self.reset_layout()
        data = self.generate()
        print(
            f"generated {data['files']} files x {data['file_bytes']} bytes = {data['total_bytes'] / 1e9:.2f} GB in {data['seconds']} s",
            flush=True,
        )
        full = self.replicate()
        print(
            f"full replication: {full['seconds']:.2f} s (copy {full['steps'].get('copy')} s, verify {full['steps'].get('verify')} s)",
            flush=True,
        )
        changed = self.change()
        before = self.last_run_id()
        t0 = time.time()
        clock = time.perf_counter()
        result = failover(SERVICE, planned=True, yes=True)
        flow_seconds = time.perf_counter() - clock
        returned = time.time()
        if result["outcome"] != "ok":
            raise RuntimeError(f"switchover did not succeed: {result}")
        answers, moved = self.answers_through_dns(self.mirror_address)
        [failover_row] = self.runs_since(before, "failover")
        replications = self.runs_since(before, "replicate")
        # the final sync runs inside the switchover, the reprotect's replication after it
        final_sync = next(r for r in replications if epoch(r.started_at) < epoch(failover_row.ended_at))
        reprotect_runs = [r for r in replications if epoch(r.started_at) >= epoch(failover_row.ended_at)]
        steps = self.with_ssh(self.step_rows(failover_row.id))
        by_name = {s["step"]: s for s in steps}
        inventory_end = by_name["inventory"]["end"]
        row = copies.service_row(SERVICE)
        planned = {
            "data": data,
            "full_replication": full,
            "files_changed": changed,
            "flow_call": round(flow_seconds, 3),
            "before_first_step": round(steps[0]["start"] - t0, 3),
            "switchover_until_inventory": round(inventory_end - t0, 3),
            "steps": steps,
            "final_sync": {
                "run_id": final_sync.id,
                "steps": self.with_ssh(self.step_rows(final_sync.id)),
                "transfer": (final_sync.details or {}).get("transfer"),
                "verification": (final_sync.details or {}).get("verification"),
            },
            "reprotect": {"seconds": round(returned - inventory_end, 3), "outcome": result.get("reprotect", {}).get("outcome")},
            "answers_through_dns_after_return": answers,
            "layout_after": {"state": row.state, "active": row.active_server, "mirror": row.mirror_server},
            "rto_seconds_reported": result.get("rto_seconds"),
            "ttl": result.get("ttl"),
        }
        planned["prefect_flow_runs"] = self.flow_runs_since(t0)
        if reprotect_runs:
            rep = reprotect_runs[0]
            rep_steps = self.with_ssh(self.step_rows(rep.id))
            planned["reprotect"].update(
                replicate_run_id=rep.id,
                replicate_seconds=round(epoch(rep.ended_at) - epoch(rep.started_at), 3),
                steps=rep_steps,
                transfer=(rep.details or {}).get("transfer"),
                verification=(rep.details or {}).get("verification"),
                before_replicate=round(epoch(rep.started_at) - inventory_end, 3),
                after_replicate=round(returned - epoch(rep.ended_at), 3),
            )
        print(
            f"switchover: until inventory {planned['switchover_until_inventory']:.2f} s, reprotect {planned['reprotect']['seconds']:.2f} s, "
            f"flow call {flow_seconds:.2f} s; layout now {row.active_server} -> {row.mirror_server} ({row.state})",
            flush=True,
        )
        return planned

    # ----- the whole run ---------------------------------------------------------------------

    def run(self) -> dict:
        from prefect.settings import get_current_settings

        self.setup()
        results = {
            "meta": {
                **run_meta(),
                "cpus": os.cpu_count(),
                "load_average_before_runs": os.getloadavg(),
                "runs": self.args.runs,
                "target_median_seconds": EMERGENCY_TARGET_SECONDS,
                "health_url": self.health_url,
                "flow_heartbeat_seconds": get_current_settings().flows.heartbeat_frequency,
            },
        }
        print(f"\n1. Emergency failover ({self.args.runs} runs)", flush=True)
        results["emergency"] = self.emergency()
        results["meta"]["load_average_after_emergency"] = os.getloadavg()
        if not self.args.no_planned:
            print(f"\n2. Planned switchover with {self.args.size_mb} MiB in {self.args.files} files", flush=True)
            results["planned"] = self.planned()
        results["meta"]["load_average_end"] = os.getloadavg()
        results["remote_commands_nonzero_exit"] = self.recorder.nonzero
        return results


# ---------------------------------------------------------------------------------------
# Summary and report


def stats(values) -> dict:
    values = [value for value in values if value is not None]
    if not values:
        return {"median": None, "min": None, "max": None}
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def summarize_emergency(runs: list[dict]) -> dict:
    names: list[str] = []
    for run in runs:
        names += [name for name in run["step_seconds"] if name not in names]
    return {
        "total": stats(r["total"] for r in runs),
        "answers_through_dns": stats(r["answers_through_dns"] for r in runs),
        "flow_call": stats(r["flow_call"] for r in runs),
        "before_first_step": stats(r["before_first_step"] for r in runs),
        "after_last_step": stats(r["after_last_step"] for r in runs),
        "steps": {name: stats(r["step_seconds"].get(name) for r in runs) for name in names},
        "total_without_fence": stats(r["total"] - (r["step_seconds"].get("fence production") or 0) for r in runs),
        "target_met": statistics.median(r["total"] for r in runs) <= EMERGENCY_TARGET_SECONDS,
    }


def fmt(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_report(results: dict) -> None:
    meta = results["meta"]
    load = meta.get("load_wait", {})

    def three(values) -> str:
        return ", ".join(f"{value:.2f}" for value in values)

    waited = f", waited {load['waited_seconds']} s" if load.get("waited_seconds") else ""
    print(
        f"\nLoad average (1/5/15 min): {three(load.get('first', ()))} when started{waited}; "
        f"{three(meta['load_average_before_runs'])} before the runs; {three(meta['load_average_end'])} at the end ({meta['cpus']} CPUs)"
    )

    emergency = results["emergency"]
    summary = emergency["summary"]
    runs = emergency["runs"]
    print(
        f"\nEmergency failover of app1 (prod-east down, -> mirror-west), {len(runs)} runs, seconds "
        f"(Prefect flow heartbeats: {meta.get('flow_heartbeat_seconds') or 'off'})"
    )
    rows = [("clock start -> first step (flow run, gather facts, plan, locks)", summary["before_first_step"])]
    for name, value in summary["steps"].items():
        label = f"step: {name}" + ("  [bounded: SSH connect timeout to the dead host]" if name == "fence production" else "")
        rows.append((label, value))
    rows += [
        ("last step -> flow returned (run summary, artifact, flow exit)", summary["after_last_step"]),
        ("flow call (failover() wall time)", summary["flow_call"]),
        ("app answers through DNS at the new address", summary["answers_through_dns"]),
        ("TOTAL (answers through DNS and flow returned)", summary["total"]),
        ("total without the fence wait", summary["total_without_fence"]),
    ]
    table(("phase", "median", "min", "max"), [(label, fmt(s["median"]), fmt(s["min"]), fmt(s["max"])) for label, s in rows])
    print(
        f"  target: median total <= {EMERGENCY_TARGET_SECONDS:g} s: {'met' if summary['target_met'] else 'MISSED'} "
        f"({summary['total']['median']:.2f} s)"
    )
    print(
        "  per run (total / answers via DNS / flow call / fence): "
        + "; ".join(
            f"{r['total']:.2f}/{r['answers_through_dns']:.2f}/{r['flow_call']:.2f}/{r['step_seconds'].get('fence production', 0):.2f}"
            for r in runs
        )
    )
    prefect = [r.get("prefect") for r in runs if r.get("prefect")]
    if prefect:
        started = stats(p["flow_run_started_after"] for p in prefect)
        tasks: dict[str, list[float]] = {}
        for p in prefect:
            for task in p["tasks"]:
                tasks.setdefault(task["task"], []).append(task["seconds"])
        ended = stats(
            r["flow_call"] - r["prefect"]["flow_run_ended_after"]
            for r in runs
            if r.get("prefect") and r["prefect"]["flow_run_ended_after"] is not None
        )
        print(
            f"  Prefect: flow run starts {fmt(started['median'])} s after the call, the call returns {fmt(ended['median'])} s after the "
            "API has the run's end (medians); task runs (median s): "
            + ", ".join(
                f"{name} {fmt(stats(values)['median'])}"
                + (f" x{len(values) // len(prefect)}" if len(values) > len(prefect) else "")
                for name, values in tasks.items()
            )
        )
    last = runs[-1]
    print("  where the time goes in the last run (SSH from the orchestrator, per step):")
    print(f"    {'before first step':<20} {last['before_first_step']:6.2f} s  " + _ssh_line(last["ssh_before_first_step"]))
    for step in last["steps"]:
        print(f"    {step['step']:<20} {step['seconds']:6.2f} s  " + _ssh_line(step["ssh"]))
    warm = emergency.get("warm_pool_run")
    if warm:
        print(
            f"  extra run, production's pooled SSH connection used just before the outage: fence {warm['step_seconds'].get('fence production'):.2f} s, "
            f"total {warm['total']:.2f} s  ({warm['fence_detail']})"
        )

    planned = results.get("planned")
    if not planned:
        return
    data = planned["data"]
    print(
        f"\nPlanned switchover of app1 with {data['files']} files x {data['file_bytes']} bytes ({data['total_bytes'] / 1e9:.2f} GB), "
        f"{planned['files_changed']} files changed since the last copy, seconds"
    )
    rows = [("clock start -> first step (flow run, gather facts, plan, locks)", planned["before_first_step"])]
    for step in planned["steps"]:
        rows.append((f"step: {step['step']}", step["seconds"]))
        if step["step"] == "final sync and verify":
            for sub in planned["final_sync"]["steps"]:
                rows.append((f"    replicate: {sub['step']}", sub["seconds"]))
    rows.append(("SWITCHOVER until 'inventory' (users on the mirror, no data lost)", planned["switchover_until_inventory"]))
    reprotect = planned["reprotect"]
    rows.append(("REPROTECT (subflow: mirror-west -> prod-east)", reprotect["seconds"]))
    if "steps" in reprotect:
        rows.append(("    before its replication (run summary, split-brain probe, flow start)", reprotect["before_replicate"]))
        for sub in reprotect["steps"]:
            rows.append((f"    replicate: {sub['step']}", sub["seconds"]))
        rows.append(("    after its replication (inventory, flow exits)", reprotect["after_replicate"]))
    rows.append(("flow call (failover(planned=True) wall time)", planned["flow_call"]))
    table(("phase", "seconds"), [(label, fmt(value)) for label, value in rows])
    full = planned["full_replication"]
    print(
        f"  before it: full replication of the data set {full['seconds']:.2f} s (copy {fmt(full['steps'].get('copy'))}, "
        f"verify {fmt(full['steps'].get('verify'))}); reprotect outcome {reprotect['outcome']}; layout after: "
        f"{planned['layout_after']['active']} -> {planned['layout_after']['mirror']} ({planned['layout_after']['state']}); "
        f"answers through DNS at the mirror: {planned['answers_through_dns_after_return']}"
    )
    flows = planned.get("prefect_flow_runs") or []
    if flows:
        print(
            "  Prefect flow runs (seconds after the call: start -> end): "
            + "; ".join(f"{f['flow']} {fmt(f['start_after'])} -> {fmt(f['end_after'])}" for f in flows)
            + f"; the call returned at {planned['flow_call']:.2f}"
        )
    print("  where the time goes (SSH from the orchestrator, per step):")
    for step in planned["steps"]:
        print(f"    {step['step']:<24} {step['seconds']:6.2f} s  " + _ssh_line(step["ssh"]))
    for label, block in (("final sync", planned["final_sync"]["steps"]), ("reprotect", reprotect.get("steps", []))):
        for step in block:
            print(f"    {label + ': ' + step['step']:<24} {step['seconds']:6.2f} s  " + _ssh_line(step["ssh"]))


def _ssh_line(breakdown: dict) -> str:
    return ", ".join(f"{label} x{c['count']} {c['seconds']:.2f}" for label, c in list(breakdown.items())[:5]) or "(no SSH)"


if __name__ == "__main__":
    sys.exit(main())
