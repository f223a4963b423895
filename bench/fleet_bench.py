"""Benchmark: ``replicate`` over a fleet of many small services, against the bare tool in the same run.

    .venv/bin/python bench/fleet_bench.py --slot 6                    # 100 services x 20 files / 100 KiB
    .venv/bin/python bench/fleet_bench.py --slot 6 --services 10      # quick run (~3 min)
    .venv/bin/python bench/fleet_bench.py --slot 6 --parallel 4       # 4 at once overall, per production, per mirror

(as root: the lab needs network namespaces and loop devices). Starts its own lab, a Prefect
test server and a temporary HOTSPARE_HOME. The lab has two services (app1, app2); this adds
``--services`` small ones (``fleet000`` ...), each with its own data folder ``/srv/NAME/data`` of
``--files`` random files (``--kib`` KiB in all) on a production server, spread round-robin over
the lab's production servers with each one's mirror (prod-east -> mirror-west, prod-west ->
mirror-east), with the schema's required fields only (plus a UID range of its own, so that the
accounts step touches nobody else's users). The lab's fleet file with those services (and, with
``--parallel K``, ``replication.parallel_services/per_source/per_target = K``) is loaded with
``hotspare fleet load``, as an operator would.

Three scenarios, each measured once, the flow and the bare tool in alternating order:

    first            the first ``replicate(services)`` flow run over all of them (full copies)
    nothing changed  no change since the last run
    1 % changed      1 % of all the files (chosen at random over the fleet) rewritten

The bare tool: for every service ``rsync -a --relative production:DATA /srv/bench-bare/NAME/``
run ON its mirror (hotspare's mirror pulls too) with the lab's unrestricted client key and a
pinned known_hosts, started over ssh from here, scheduled by hotspare's own pure planner
(``planning/fleet_replication.startable``) with the same bounds as the flow: the same
parallelism overall, per production and per mirror. Reported: both walls, each service's time
(hotspare: its run record; bare: rsync's own time on the mirror), and hotspare's per-service
overhead = (hotspare wall - bare wall) x parallelism / services, where parallelism is what the
bounds allow at once on this lab. Where the flow's time goes: flow start (call -> first service
run) and stop (last service run -> return), each step's median, and inside the steps the time
in SSH (connects, remote commands; recorded in-process) against the rest (Prefect task runs,
inventory writes, Python), plus the task runs the Prefect API recorded.

Then an EXTRAPOLATION (printed as such) to 100 services of 1 GB with 1 % changed per 5 minutes,
from the per-service overhead measured here and the 1 GB numbers in
bench/out/proportional-fleet-1gb.json. Writes bench/out/fleet-N.json. A benchmark, not a test:
the machine is shared (load average printed at start and end), so numbers are upper bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    SshRecorder,
    by_label,
    epoch,
    isolate_environment,
    lab_and_prefect,
    run_meta,
    ssh_argv,
    table,
    write_random_files,
    write_results,
)

OUT_DIR = ROOT / "bench" / "out"
ONE_GB = ROOT / "bench" / "out" / "proportional-fleet-1gb.json"
BARE_ROOT = "/srv/bench-bare"
PREFIX = "fleet"
UID_BASE = 20000  # each bench service owns UIDs UID_BASE + 10 i .. + 9 (none exist: nothing to merge)
TIMED = 's=$(date +%s%N); "$@"; rc=$?; e=$(date +%s%N); printf "\\n@@bench %s %s %s\\n" "$s" "$e" "$rc" >&2'
EXTRAPOLATE = {"services": 100, "gigabytes": 1.0, "change_percent": 1.0, "rpo_seconds": 300.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=100, help="small services added to the lab (default 100)")
    parser.add_argument("--files", type=int, default=20, help="files per service (default 20)")
    parser.add_argument("--kib", type=int, default=100, help="KiB of data per service (default 100)")
    parser.add_argument(
        "--parallel",
        type=int,
        default=None,
        help="set replication.parallel_services, parallel_per_source and parallel_per_target to K "
        "(default: the fleet's defaults)",
    )
    parser.add_argument("--slot", type=int, default=None, help="lab slot (default: a free one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--out", default=None, help="default bench/out/fleet-N.json")
    args = parser.parse_args()
    if min(args.services, args.files, args.kib) < 1 or (args.parallel is not None and not 1 <= args.parallel <= 64):
        parser.error("--services, --files and --kib must be positive, --parallel 1..64")
    args.out = args.out or str(OUT_DIR / f"fleet-{args.services}.json")

    home = Path(tempfile.mkdtemp(prefix="hotspare-fleet."))
    isolate_environment(home)
    started = time.monotonic()
    with lab_and_prefect(home, args.slot, args.keep, started) as (lab, env):
        bench = FleetBench(lab, env, args, home)
        try:
            results = bench.run()
        finally:
            bench.cleanup()
    results["meta"].update(total_seconds=round(time.monotonic() - started, 1), slot=lab.slot)
    print_report(results)
    write_results(results, args.out)
    return 0


def load() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def median(values) -> float | None:
    values = [value for value in values if value is not None]
    return round(statistics.median(values), 3) if values else None


def server_cpu_seconds() -> float | None:
    """CPU seconds (user + system, with reaped children) of the Prefect test server this process
    started (a child whose command line names prefect or uvicorn); None when not found."""
    ticks, own, total, found = os.sysconf("SC_CLK_TCK"), str(os.getpid()), 0.0, False
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            if fields[1] != own:  # the parent's pid
                continue
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "prefect" in command or "uvicorn" in command:
            found = True
            total += sum(int(value) for value in fields[11:15]) / ticks
    return round(total, 3) if found else None


class FleetBench:
    def __init__(self, lab, env: dict, args, home: Path) -> None:
        self.lab, self.env, self.args, self.home = lab, env, args, home
        self.recorder = SshRecorder()
        self.rng = random.Random(20261201)
        self.fleet = None
        self.names: list[str] = []
        self.placement: dict[str, tuple[str, str]] = {}  # service -> (production, mirror)
        self.files: list[Path] = []
        self.file_bytes = args.kib * 1024 // args.files
        self.peers: dict[str, object] = {}  # mirror -> its unrestricted pull access to its production

    # ----- helpers ----------------------------------------------------------------------

    def ssh(self, host: str, argv: list[str], stdin: bytes | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            ssh_argv(self.env, host, argv), input=stdin or b"", capture_output=True, timeout=timeout, check=False
        )

    def must(self, host: str, argv: list[str], stdin: bytes | None = None) -> str:
        result = self.ssh(host, argv, stdin)
        if result.returncode != 0:
            raise RuntimeError(
                f"on {host}: {shlex.join(argv)[:200]} exited {result.returncode}: {result.stderr.decode(errors='replace')[-500:]}"
            )
        return result.stdout.decode(errors="replace")

    def timed_on(self, host: str, argv: list[str]) -> float:
        """argv's own duration on the lab host (without the SSH login from here)."""
        result = self.ssh(host, ["sh", "-c", TIMED, "sh", *argv])
        marker = [line for line in result.stderr.decode(errors="replace").splitlines() if line.startswith("@@bench ")]
        if not marker or marker[-1].split()[3] != "0":
            raise RuntimeError(f"on {host}: {shlex.join(argv)[:200]} failed: {result.stderr.decode(errors='replace')[-500:]}")
        _, start, end, _ = marker[-1].split()
        return (int(end) - int(start)) / 1e9

    # ----- set-up -----------------------------------------------------------------------

    def fleet_document(self) -> dict:
        """The lab's fleet file plus the small services (and the --parallel bounds)."""
        document = yaml.safe_load(Path(self.env["fleet_file"]).read_text())
        pairs = sorted({(spec["production"], spec["mirror"]) for spec in self.env["services"].values()})
        storage = document["services"][0]["storage"]
        for index in range(self.args.services):
            name = f"{PREFIX}{index:03d}"
            production, mirror = pairs[index % len(pairs)]
            self.names.append(name)
            self.placement[name] = (production, mirror)
            document["services"].append(
                {
                    "name": name,
                    "dns_name": f"{name}.{self.env['zone']}",
                    "zone": self.env["zone"],
                    "production": production,
                    "mirror": mirror,
                    "storage": storage,
                    "data_paths": [f"/srv/{name}/data"],
                    "accounts": {"uid_min": UID_BASE + 10 * index, "uid_max": UID_BASE + 10 * index + 9},
                }
            )
        if self.args.parallel is not None:
            document.setdefault("replication", {}).update(
                parallel_services=self.args.parallel,
                parallel_per_source=self.args.parallel,
                parallel_per_target=self.args.parallel,
            )
        return document

    def setup(self) -> dict:
        from hotspare import access
        from hotspare.cli import main as cli
        from hotspare.planning import replication as plan

        self.lab.register_blocks()
        path = self.home / "fleet-bench.yaml"
        path.write_text(yaml.safe_dump(self.fleet_document(), sort_keys=False))
        began = time.perf_counter()
        if cli(["fleet", "load", str(path)]) != 0:
            raise RuntimeError(f"hotspare fleet load {path} failed")
        loaded = time.perf_counter() - began
        self.fleet = fleet = access.loaded_fleet()
        # the data: written straight into each production host's /srv (btrfs on its loop devices)
        began = time.perf_counter()
        for name in self.names:
            production = self.placement[name][0]
            folder = Path(self.env["hosts"][production]["root"]) / "srv" / name / "data"
            self.files += write_random_files(folder, self.args.files, self.file_bytes)
        os.sync()
        written = time.perf_counter() - began
        # the bare pulls: each mirror gets the lab's unrestricted key and its production's pinned host key
        key = Path(self.env["ssh"]["key"]).read_bytes()
        for production, mirror in sorted(set(self.placement.values())):
            source = fleet.server(production)
            # a folder per mirror: the lab's hosts may share this machine's /run
            peer = plan.peer_access(
                f"bench-{os.getpid()}-pull-{mirror}", self.env["ssh"]["user"], source.address, source.ssh_port
            )
            known = f"{access.endpoint(fleet, production).known_hosts_line()}\n".encode()
            self.must(mirror, ["install", "-d", "-m", "0700", peer.directory])
            self.must(mirror, ["sh", "-c", 'umask 077 && cat > "$1"', "sh", peer.key_path], key)
            self.must(mirror, ["sh", "-c", 'umask 077 && cat > "$1"', "sh", peer.known_hosts_path], known)
            self.must(mirror, ["install", "-d", "-m", "0700", BARE_ROOT])
            self.peers[mirror] = peer
        self.recorder.install()
        return {"fleet_load_seconds": round(loaded, 2), "data_written_seconds": round(written, 2)}

    def cleanup(self) -> None:
        for mirror, peer in self.peers.items():
            self.ssh(mirror, ["rm", "-rf", "--", peer.directory, BARE_ROOT], timeout=120)

    def bounds(self):
        from hotspare.planning.fleet_replication import Bounds

        settings = self.fleet.replication
        return Bounds(settings.parallel_services, settings.parallel_per_source, settings.parallel_per_target)

    def parallelism(self) -> int:
        """How many services the bounds let run at once on this lab's servers."""
        bounds = self.bounds()
        sources = {production for production, _ in self.placement.values()}
        targets = {mirror for _, mirror in self.placement.values()}
        return min(bounds.overall, bounds.per_source * len(sources), bounds.per_target * len(targets), len(self.names))

    # ----- the bare tool ----------------------------------------------------------------

    def bare_one(self, name: str) -> float:
        production, mirror = self.placement[name]
        peer = self.peers[mirror]
        argv = [
            "rsync",
            "-a",
            "--relative",
            "-e",
            peer.ssh_command(),
            *peer.remotes([f"/srv/{name}/data"]),
            f"{BARE_ROOT}/{name}/",
        ]
        return self.timed_on(mirror, argv)

    def bare_all(self) -> dict:
        """Every service's bare pull, scheduled with the flow's bounds by the product's pure planner."""
        from hotspare.planning.fleet_replication import Job, startable

        bounds = self.bounds()
        pending = [Job(name, *self.placement[name]) for name in self.names]
        seconds, running = {}, {}
        started = time.perf_counter()
        with ThreadPoolExecutor(bounds.overall) as pool:
            while pending or running:
                for job in startable(pending, list(running.values()), bounds):
                    pending.remove(job)
                    running[pool.submit(self.bare_one, job.service)] = job
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in done:
                    seconds[running.pop(future).service] = round(future.result(), 3)
        wall = time.perf_counter() - started
        return {
            "wall": round(wall, 3),
            "services": seconds,
            "service_median": median(seconds.values()),
            "service_sum": round(sum(seconds.values()), 3),
        }

    # ----- hotspare ---------------------------------------------------------------------

    def last_run_id(self) -> int:
        from sqlmodel import func, select

        from hotspare.inventory.db import session
        from hotspare.inventory.models import RunRow

        with session() as db:
            return db.exec(select(func.max(RunRow.id))).one() or 0

    def runs_since(self, run_id: int) -> list:
        from sqlmodel import select

        from hotspare.inventory.db import session
        from hotspare.inventory.models import RunRow

        with session() as db:
            rows = db.exec(select(RunRow).where(RunRow.id > run_id, RunRow.kind == "replicate").order_by(RunRow.id)).all()
            return [row.model_copy() for row in rows]

    def step_rows(self, run_id: int) -> list[dict]:
        from sqlmodel import select

        from hotspare.inventory.db import session
        from hotspare.inventory.models import StepRow

        with session() as db:
            rows = db.exec(select(StepRow).where(StepRow.run_id == run_id).order_by(StepRow.id)).all()
            return [
                {"step": row.name, "start": epoch(row.started_at), "end": epoch(row.ended_at)} for row in rows if row.ended_at
            ]

    def flow(self, force: bool = False) -> dict:
        """One ``replicate(services)`` flow run over the bench services, with each service's run."""
        from flows.replicate import replicate

        before = self.last_run_id()
        cpu, server_cpu, wall_start = time.process_time(), server_cpu_seconds(), time.time()
        clock = time.perf_counter()
        results = replicate(services=self.names, force=force)
        seconds = time.perf_counter() - clock
        wall_end = time.time()
        cpu_seconds = time.process_time() - cpu
        server_after = server_cpu_seconds()
        server_cpu = round(server_after - server_cpu, 3) if server_cpu is not None and server_after is not None else None
        bad = {name: r for name, r in results.items() if r.get("outcome") != "ok"}
        if bad:
            raise RuntimeError(f"replicate: {len(bad)} services did not end ok: {dict(list(bad.items())[:3])}")
        rows = self.runs_since(before)
        services, steps, ssh = {}, {}, {"connect": 0.0, "command": 0.0, "other": 0.0, "connects": 0, "commands": 0}
        for row in rows:
            start, end = epoch(row.started_at), epoch(row.ended_at)
            services[row.service] = round(end - start, 3)
            for step in self.step_rows(row.id):
                steps.setdefault(step["step"], []).append(step["end"] - step["start"])
        # SSH time inside steps: connects and remote commands of every service (recorded here)
        events = self.recorder.between(wall_start, wall_end, slack=0.01)
        for event in events:
            ssh["connect" if event["kind"] == "connect" else "command"] += event["end"] - event["start"]
            ssh["connects" if event["kind"] == "connect" else "commands"] += 1
        first_start = min(epoch(row.started_at) for row in rows)
        last_end = max(epoch(row.ended_at) for row in rows)
        flow_run_id = rows[0].flow_run_id if rows else None
        return {
            "seconds": round(seconds, 3),
            "cpu_seconds": round(cpu_seconds, 3),
            "server_cpu_seconds": server_cpu,
            "runs": len(rows),
            "flow_start": round(first_start - wall_start, 3),
            "flow_stop": round(wall_end - last_end, 3),
            "services": services,
            "service_median": median(services.values()),
            "service_sum": round(sum(services.values()), 3),
            "steps": {name: {"median": median(values), "sum": round(sum(values), 3)} for name, values in steps.items()},
            "ssh": {
                "connects": ssh["connects"],
                "connect_seconds": round(ssh["connect"], 3),
                "commands": ssh["commands"],
                "command_seconds": round(ssh["command"], 3),
                "by_label": by_label((f"{e['label']} @{e['host'].split('-')[0]}", e["end"] - e["start"]) for e in events),
            },
            "flow_run_id": flow_run_id,
            "prefect": self.prefect_tasks(flow_run_id),
        }

    def prefect_tasks(self, flow_run_id: str | None) -> dict | None:
        """The flow run's task runs as the Prefect API recorded them (they arrive batched: poll
        until the count settles, 20 s at most) and the flow run's own start and end."""
        if not flow_run_id:
            return None
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        with get_client(sync_client=True) as client:
            deadline, previous, tasks = time.monotonic() + 20, -1, []
            while time.monotonic() < deadline:
                tasks = []
                offset = 0
                while True:
                    page = client.read_task_runs(
                        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])), limit=200, offset=offset
                    )
                    tasks += page
                    offset += len(page)
                    if len(page) < 200:
                        break
                finished = [t for t in tasks if t.end_time is not None]
                if len(finished) == len(tasks) and len(tasks) == previous:
                    break
                previous = len(tasks)
                time.sleep(1.0)
            flow_run = client.read_flow_run(flow_run_id)
        by_task: dict[str, list[float]] = {}
        for task in tasks:
            if task.start_time and task.end_time:
                by_task.setdefault(task.name.rsplit("-", 1)[0], []).append((task.end_time - task.start_time).total_seconds())
        return {
            "task_runs": len(tasks),
            "task_run_seconds": round(sum(sum(v) for v in by_task.values()), 3),
            "by_task": {
                name: {"count": len(v), "seconds": round(sum(v), 3)}
                for name, v in sorted(by_task.items(), key=lambda i: -sum(i[1]))
            },
            "flow_run_seconds": round((flow_run.end_time - flow_run.start_time).total_seconds(), 3)
            if flow_run.start_time and flow_run.end_time
            else None,
        }

    # ----- scenarios ----------------------------------------------------------------------

    def change_one_percent(self) -> int:
        count = max(1, len(self.files) // 100)
        for path in self.rng.sample(self.files, count):
            path.write_bytes(os.urandom(self.file_bytes))
        os.sync()
        return count

    def scenario(self, name: str, flow_first: bool, change=None, force: bool = False) -> dict:
        changed = change() if change else 0
        before = load()
        measured: dict = {"order": "hotspare > bare" if flow_first else "bare > hotspare", "files_changed": changed}
        for what in ("flow", "bare") if flow_first else ("bare", "flow"):
            measured[what] = self.flow(force=force) if what == "flow" else self.bare_all()
            os.sync()
        measured["load_before"], measured["load_after"] = before, load()
        flow, bare = measured["flow"], measured["bare"]
        parallel = self.parallelism()
        measured["parallelism"] = parallel
        measured["overhead_per_service"] = round((flow["seconds"] - bare["wall"]) * parallel / len(self.names), 3)
        print(
            f"  {name} ({measured['order']}, {changed} files changed): replicate {flow['seconds']:.2f} s "
            f"(service median {flow['service_median']:.2f} s, flow start {flow['flow_start']:.2f} s, stop {flow['flow_stop']:.2f} s, "
            f"CPU here {flow['cpu_seconds']:.1f} s); bare {bare['wall']:.2f} s (service median {bare['service_median']:.3f} s); "
            f"overhead/service {measured['overhead_per_service']:.3f} s x{parallel}; load {before[0]} -> {measured['load_after'][0]}",
            flush=True,
        )
        return measured

    def run(self) -> dict:
        results = {"meta": {**run_meta(), "cpus": os.cpu_count(), "load_start": load(), "args": vars(self.args)}}
        print(f"load average at start {results['meta']['load_start']} ({os.cpu_count()} CPUs)", flush=True)
        setup = self.setup()
        bounds = self.bounds()
        results["setup"] = {
            **setup,
            "services": len(self.names),
            "files_each": self.args.files,
            "file_bytes": self.file_bytes,
            "placement": sorted({f"{p} -> {m}" for p, m in self.placement.values()}),
            "bounds": {"overall": bounds.overall, "per_source": bounds.per_source, "per_target": bounds.per_target},
            "parallelism": self.parallelism(),
        }
        print(
            f"{len(self.names)} services x {self.args.files} files ({self.args.kib} KiB) loaded in {setup['fleet_load_seconds']} s, "
            f"data written in {setup['data_written_seconds']} s; bounds {results['setup']['bounds']} -> "
            f"{results['setup']['parallelism']} at once on {', '.join(results['setup']['placement'])}",
            flush=True,
        )
        scenarios = results["scenarios"] = {}
        scenarios["first (full copies)"] = self.scenario("first (full copies)", True, force=True)
        scenarios["nothing changed"] = self.scenario("nothing changed", False)
        scenarios["1 % changed"] = self.scenario("1 % changed", True, change=self.change_one_percent)
        results["extrapolation"] = extrapolate(results)
        results["meta"]["load_end"] = load()
        return results


# ---------------------------------------------------------------------------------------
# Extrapolation and report


def extrapolate(results: dict) -> dict | None:
    """100 services of 1 GB, 1 % changed per 5 minutes: NOT measured, computed.

    Per service = the bare 1 GB pull/push with 1 % changed (bench/out/proportional-fleet-1gb.json)
    + this run's per-service overhead with 1 % changed (small data) + the data-dependent part of
    hotspare's work at 1 GB (copy and verify steps there minus the bare tool there, which the small
    services here do not show). The wall for 100 = 100 x per service / services at once."""
    if not ONE_GB.exists():
        return None
    big = json.loads(ONE_GB.read_text())["fleet"]["scenarios"]["1 % changed"]
    here = results["scenarios"]["1 % changed"]
    bare_1gb = statistics.median(big["bare_seconds"].values())
    copy_1gb = statistics.median(big["copy_seconds"].values())
    verify_1gb = big["steps"].get("verify") or 0.0
    flow_small = here["flow"]
    small_copy = (flow_small["steps"].get("copy") or {}).get("median") or 0.0
    small_verify = (flow_small["steps"].get("verify") or {}).get("median") or 0.0
    data_part = max(0.0, (copy_1gb - bare_1gb) - small_copy) + max(0.0, verify_1gb - small_verify)
    overhead = here["overhead_per_service"]
    per_service = bare_1gb + overhead + data_part
    count, rpo = EXTRAPOLATE["services"], EXTRAPOLATE["rpo_seconds"]
    cpu_per_service = flow_small["cpu_seconds"] / max(1, flow_small["runs"])
    rows = [
        {"parallel": p, "wall_seconds": round(count * per_service / p, 1), "within_rpo": count * per_service / p <= rpo}
        for p in sorted({1, 2, 4, 8, here["parallelism"]})
    ]
    return {
        **EXTRAPOLATE,
        "source": str(ONE_GB.relative_to(ROOT)),
        "bare_1gb_seconds": round(bare_1gb, 3),
        "overhead_per_service_small": overhead,
        "data_dependent_seconds": round(data_part, 3),
        "copy_1gb_seconds": copy_1gb,
        "verify_1gb_seconds": verify_1gb,
        "per_service_seconds": round(per_service, 3),
        "orchestrator_cpu_per_service": round(cpu_per_service, 3),
        "orchestrator_cpu_for_100": round(count * cpu_per_service, 1),
        "rows": rows,
        "parallel_needed": int(-(-count * per_service // rpo)),
    }


def _s(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_report(results: dict) -> None:
    meta, setup = results["meta"], results["setup"]
    print(
        f"\nLoad average at start {meta['load_start']}, at end {meta['load_end']} ({meta['cpus']} CPUs, shared with other "
        "work: every number is an upper bound)"
    )
    print(
        f"\nreplicate over {setup['services']} services x {setup['files_each']} files x {setup['file_bytes']} bytes "
        f"({', '.join(setup['placement'])}); bounds {setup['bounds']}: {setup['parallelism']} at once; the bare tool "
        f"(rsync -a pull over SSH, run on the mirror) with the same bounds"
    )
    header = (
        "scenario",
        "hotspare wall",
        "bare wall",
        "overhead/service",
        "hs service median",
        "bare service median",
        "flow start",
        "flow stop",
        "CPU here/service",
        "CPU Prefect server/service",
        "load",
    )
    rows = []
    for name, s in results["scenarios"].items():
        flow, bare = s["flow"], s["bare"]
        rows.append(
            (
                name,
                _s(flow["seconds"]),
                _s(bare["wall"]),
                _s(s["overhead_per_service"], 3),
                _s(flow["service_median"]),
                _s(bare["service_median"], 3),
                _s(flow["flow_start"]),
                _s(flow["flow_stop"]),
                _s(flow["cpu_seconds"] / max(1, flow["runs"]), 3),
                _s(flow["server_cpu_seconds"] / max(1, flow["runs"]), 3) if flow.get("server_cpu_seconds") is not None else "-",
                f"{s['load_before'][0]}->{s['load_after'][0]}",
            )
        )
    table(header, rows)
    print(
        "  overhead/service = (hotspare wall - bare wall) x services at once / services; hs service = a service's run record "
        "(lock, steps, summary), bare service = rsync's own time on the mirror; flow start/stop = call -> first service run, "
        "last service run -> return; CPU here = this process's CPU seconds / services; CPU Prefect server = the test server's "
        "(a child process)"
    )
    print("\n  where a service's time goes (median seconds per service; sums over all services in brackets):")
    names = list(dict.fromkeys(step for s in results["scenarios"].values() for step in s["flow"]["steps"]))
    step_rows = []
    for step in names:
        step_rows.append(
            (
                step,
                *[
                    f"{_s(s['flow']['steps'].get(step, {}).get('median'), 3)} [{_s(s['flow']['steps'].get(step, {}).get('sum'), 1)}]"
                    for s in results["scenarios"].values()
                ],
            )
        )
    ssh_row, prefect_row, task_row = (
        ["SSH: connects / commands (sum s)"],
        ["Prefect task runs (count, sum s)"],
        ["flow run (Prefect API) s"],
    )
    for s in results["scenarios"].values():
        ssh = s["flow"]["ssh"]
        ssh_row.append(f"{ssh['connects']}/{ssh['commands']} ({ssh['connect_seconds']:.1f}+{ssh['command_seconds']:.1f})")
        prefect = s["flow"]["prefect"] or {}
        prefect_row.append(f"{prefect.get('task_runs', '-')} ({_s(prefect.get('task_run_seconds'), 1)})")
        task_row.append(_s(prefect.get("flow_run_seconds")))
    table(("step", *results["scenarios"]), [*step_rows, tuple(ssh_row), tuple(prefect_row), tuple(task_row)])
    last = list(results["scenarios"].values())[-1]["flow"]["ssh"]["by_label"]
    print("\n  remote commands of the flow, last scenario (per service: count, seconds; prod = production, mirror = mirror):")
    services = results["setup"]["services"]
    table(
        ("command @host", "per service", "s per service"),
        [(label, f"{v['count'] / services:.1f}", f"{v['seconds'] / services:.3f}") for label, v in list(last.items())[:14]],
    )
    x = results.get("extrapolation")
    if not x:
        return
    print(
        f"\nEXTRAPOLATION (not measured): {x['services']} services x {x['gigabytes']:g} GB, {x['change_percent']:g} % changed "
        f"every {x['rpo_seconds']:.0f} s"
    )
    print(
        f"  per service {x['per_service_seconds']:.2f} s = bare rsync at 1 GB / 1 % {x['bare_1gb_seconds']:.2f} s ({x['source']}) "
        f"+ overhead measured here {x['overhead_per_service_small']:.2f} s + data-dependent copy/verify work at 1 GB "
        f"{x['data_dependent_seconds']:.2f} s (copy step {x['copy_1gb_seconds']:.2f} s and verify step {x['verify_1gb_seconds']:.2f} s "
        f"there, minus the bare tool and the small services' steps here)"
    )
    print(
        f"  orchestrator CPU {x['orchestrator_cpu_per_service']:.2f} s per service -> {x['orchestrator_cpu_for_100']:.0f} s per "
        f"round of 100 (against {x['rpo_seconds']:.0f} s per core)"
    )
    table(
        ("services at once", "wall for 100", f"within {x['rpo_seconds']:.0f} s"),
        [(r["parallel"], f"{r['wall_seconds']:.0f} s", "yes" if r["within_rpo"] else "no") for r in x["rows"]],
    )
    print(f"  services at once needed: {x['parallel_needed']} (as long as the servers and the orchestrator's CPU keep up)")


if __name__ == "__main__":
    sys.exit(main())
