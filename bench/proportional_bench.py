"""Benchmark: cost proportional to change. Failover time independent of data size, and
``replicate --all`` running services side by side, each against the bare tool in the same run.

    .venv/bin/python bench/proportional_bench.py --slot 8        # 10 MB vs 1.5 GB (5 failovers each), replicate --all x 3 with 1 GB per service (~15 min on 2 shared cores)
    .venv/bin/python bench/proportional_bench.py --slot 8 --skip-failover        # replicate --all only (~8 min)
    .venv/bin/python bench/proportional_bench.py --big-mb 100 --rto-runs 2 --reps 2 --fleet-mb 10   # dry run (~5 min)
    .venv/bin/python bench/proportional_bench.py --slot 7 --skip-fleet --big-mb 10240 --rto-runs 3 --disk-gib 5 --data-profile raid0   # 10 MiB vs 10 GiB

The lab's /srv holds about 1.5 GB of RTO data beside its copies (4 x 2 GiB in RAID10). A larger
``--big-mb`` (up to 10 GiB) needs the benchmark lab's disks larger: ``--disk-gib`` sets each
loop-backed member's size, and ``--data-profile raid0`` stores each byte once instead of twice
(metadata stays RAID10), so 10 GiB on production plus its copy on the mirror take ~21 GB of the
machine's disk instead of ~42 GB (both only for the lab this benchmark builds, through
hotspare/lab/disks.py's environment variables; the images go with the lab's folder at the end).
The benchmark refuses sizes that would not fit the disks it asked for.

(as root: the lab needs network namespaces and loop devices). The copy step and the whole
replicate flow against bare ``rsync -a`` over SSH (full / 1 % / nothing changed) are measured by
bench/replication_bench.py, which prints the targets (copy <= 1.15 x, flow <= 1.5 x bare + 0.5 s).

Starts its own lab, a Prefect test server and a temporary HOTSPARE_HOME, loads the lab's fleet.

1. Emergency failover RTO against data size. app1's data on prod-east gets ``--small-mb`` (10 MB),
   one replication, then ``--rto-runs`` emergency failovers (``lab.fail("prod-east")``, then
   ``failover("app1", yes=True)``, clock stopped when the app answers through its DNS name at the
   mirror and the flow returned; bench/failover_bench.py's runs, layout put back between runs).
   Then the data grows to ``--big-mb`` (default 1.5 GB, what the lab's 4 GiB RAID10 /srv holds
   comfortably beside its copies), one replication, and the same runs. Before each size's runs
   both hosts' filesystems settle (``btrfs subvolume sync /srv && sync``: btrfs cleans pruned
   snapshots in the background, which slows any snapshot commit meanwhile). Target: the big data's
   median within 1 s of the small one's (activation swaps in a btrfs snapshot: no data moves).

2. ``replicate --all`` over the lab's services (app1 prod-east -> mirror-west, app2 prod-west ->
   mirror-east; default bounds: 2 at once, 1 per production server). Each service gets
   ``--fleet-mb`` of data; after a first run, per scenario (1 % changed, nothing changed) and
   repetition, in alternating order: the bare tool (``rsync -a --relative PATHS mirror:/srv/bench-bare/``
   run on each production host with the lab's unrestricted key, one service after the other) and
   the ``replicate`` flow over all services. From the run records: each service's run and copy
   step (start, end), whether the two copy steps overlapped in time, and the per-service
   orchestration overhead (the service's run minus its bare rsync in the same repetition), with the
   orchestrator's CPU seconds per service. Then an EXTRAPOLATION (printed as such) to 100 services
   of 1 GB with 1 % changed every 5 minutes.

Prints tables with the load average next to each, writes bench/out/proportional.json. A benchmark,
not a test: medians over repetitions on a shared machine.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import failover_bench  # noqa: E402
from bench.common import (  # noqa: E402
    SshRecorder,
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

OUT = ROOT / "bench" / "out" / "proportional.json"
RTO_SERVICE = "app1"
RTO_GAP_TARGET = 1.0  # big data's median RTO at most this much above the small data's
BARE_TARGET = "/srv/bench-bare"
FILE_BYTES = 256 * 1024  # the RTO data set: 256 KiB files (1.5 GB = 6,000 files)
FLEET_FILES_PER_MIB = 10  # ~100 KiB files: 1000 MiB = 10,000 files, as in the extrapolation
TIMED = 's=$(date +%s%N); "$@"; rc=$?; e=$(date +%s%N); printf "\\n@@bench %s %s %s\\n" "$s" "$e" "$rc" >&2'
# The extrapolation's fleet: 100 services of 1 GB (10,000 x 100 KiB), 1 % changed per 5 minutes.
EXTRAPOLATE = {"services": 100, "gigabytes": 1.0, "files": 10_000, "change_percent": 1.0, "rpo_seconds": 300.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small-mb", type=int, default=10, help="app1's data for the small failover (default 10 MiB)")
    parser.add_argument("--big-mb", type=int, default=1500, help="app1's data for the big failover (default 1500 MiB)")
    parser.add_argument(
        "--fleet-mb",
        type=int,
        default=1000,
        help="data per service for replicate --all (default 1000 MiB = 10,000 files, the extrapolation's size)",
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions of the replicate --all scenarios (default 3)")
    parser.add_argument("--rto-runs", type=int, default=5, help="emergency failovers per data size (default 5)")
    parser.add_argument(
        "--disk-gib",
        type=float,
        default=None,
        help="size of each of the lab's loop-backed /srv disks in GiB (default: the lab's, 2 GiB; 5 for --big-mb 10240 with raid0)",
    )
    parser.add_argument(
        "--data-profile",
        choices=("raid10", "raid0"),
        default="raid10",
        help="btrfs data profile of production's and the mirror's /srv (default raid10, as the lab; raid0 halves the disk used)",
    )
    parser.add_argument("--skip-failover", action="store_true")
    parser.add_argument("--skip-fleet", action="store_true")
    parser.add_argument("--slot", type=int, default=None, help="lab slot (default: a free one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    if min(args.small_mb, args.fleet_mb, args.reps, args.rto_runs) < 1 or args.big_mb <= args.small_mb:
        parser.error("sizes and --reps must be positive, --big-mb above --small-mb")
    disk_problem = disks_fit(args)
    if disk_problem:
        parser.error(disk_problem)

    home = Path(tempfile.mkdtemp(prefix="hotspare-proportional."))
    isolate_environment(home)
    started = time.monotonic()
    with lab_and_prefect(home, args.slot, args.keep, started) as (lab, env):
        bench = Bench(lab, env, args)
        try:
            results = bench.run()
        finally:
            bench.cleanup()
    results["meta"].update(total_seconds=round(time.monotonic() - started, 1), slot=lab.slot)
    print_report(results)
    write_results(results, args.out)
    return 0


def disks_fit(args) -> str | None:
    """Why the RTO data would not fit the lab's /srv (None when it fits), and set the lab's disk
    size and data profile (hotspare/lab/disks.py reads them when the lab is built).

    Production keeps the data, the mirror its copy: each holds it once per data copy of the
    profile (two for RAID10), plus a quarter and 1 GiB of headroom for metadata and chunks."""
    from hotspare.lab import disks

    member = args.disk_gib * 2**30 if args.disk_gib else disks.MEMBER_BYTES
    stored = max(args.big_mb, args.fleet_mb if not args.skip_fleet else 0) * 2**20 * (2 if args.data_profile == "raid10" else 1)
    if stored * 1.25 + 2**30 > disks.RAID_MEMBERS * member:
        wanted = math.ceil((stored * 1.25 + 2**30) / disks.RAID_MEMBERS / 2**30)
        return (
            f"{args.big_mb} MiB in {args.data_profile} does not fit {disks.RAID_MEMBERS} disks of {member / 2**30:g} GiB: "
            f"give --disk-gib {wanted}" + (" (or --data-profile raid0 to halve it)" if args.data_profile == "raid10" else "")
        )
    if args.disk_gib:
        os.environ[disks.DISK_GIB_VARIABLE] = f"{args.disk_gib:g}"
    if args.data_profile != "raid10":
        os.environ[disks.DATA_PROFILE_VARIABLE] = args.data_profile
    return None


def load() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def median(values) -> float | None:
    values = [value for value in values if value is not None]
    return round(statistics.median(values), 3) if values else None


class Bench:
    def __init__(self, lab, env: dict, args) -> None:
        self.lab, self.env, self.args = lab, env, args
        self.recorder = SshRecorder()
        self.peers: dict[str, object] = {}  # production host -> its unrestricted push access
        self.rng = random.Random(20261130)
        self.fleet = None
        self.runs = None  # bench/failover_bench.py's Bench: emergency runs, the layout put back, run records

    # ----- helpers ----------------------------------------------------------------------

    def ssh(self, host: str, argv: list[str], stdin: bytes | None = None, timeout: float = 1800) -> subprocess.CompletedProcess:
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

    def data_dir(self, service: str) -> Path:
        spec = self.env["services"][service]
        return Path(self.env["hosts"][spec["production"]]["root"]) / spec["data_path"].lstrip("/")

    def setup(self) -> None:
        from hotspare import access
        from hotspare.cli import main as cli
        from hotspare.planning import replication as plan

        self.lab.register_blocks()
        if cli(["fleet", "load", self.env["fleet_file"]]) != 0:
            raise RuntimeError("hotspare fleet load failed")
        self.fleet = fleet = access.loaded_fleet()
        key = Path(self.env["ssh"]["key"]).read_bytes()
        for service in fleet.services:
            spec = self.env["services"][service.name]
            production, mirror = spec["production"], spec["mirror"]
            target = fleet.server(mirror)
            peer = plan.peer_access(
                f"bench-{os.getpid()}-{service.name}", self.env["ssh"]["user"], target.address, target.ssh_port
            )
            known = f"{access.endpoint(fleet, mirror).known_hosts_line()}\n".encode()
            self.must(production, ["install", "-d", "-m", "0700", peer.directory])
            self.must(production, ["sh", "-c", 'umask 077 && cat > "$1"', "sh", peer.key_path], key)
            self.must(production, ["sh", "-c", 'umask 077 && cat > "$1"', "sh", peer.known_hosts_path], known)
            self.peers[service.name] = peer
        self.recorder.install()
        self.runs = failover_bench.Bench(self.lab, self.env, SimpleNamespace())
        self.runs.recorder = self.recorder
        self.runs.health_url = fleet.service(RTO_SERVICE).health_url

    def cleanup(self) -> None:
        for service, peer in self.peers.items():
            self.ssh(self.env["services"][service]["production"], ["rm", "-rf", "--", peer.directory], timeout=60)

    def bare_copy(self, service: str) -> float:
        """``rsync -a`` of the service's declared paths, run on production, pushed to its mirror."""
        from hotspare.planning import replication as plan

        peer = self.peers[service]
        paths = plan.source_paths(self.fleet.service(service).model_dump(mode="json"))
        argv = ["rsync", "-a", "--relative", "-e", peer.ssh_command(), *paths, peer.remote(f"{BARE_TARGET}-{service}/")]
        return self.timed_on(self.env["services"][service]["production"], argv)

    # ----- 1. failover time against data size ---------------------------------------------

    def failover_runs(self, label: str, failover: failover_bench.Bench) -> dict:
        replicated = failover.replicate()
        print(
            f"  {label}: replicated in {replicated['seconds']:.2f} s (copy {replicated['steps'].get('copy')} s, "
            f"verify {replicated['steps'].get('verify')} s)",
            flush=True,
        )
        # both hosts' filesystems settle first: the replication's pruned snapshots are cleaned up
        # by btrfs in the background, which would slow the failover's own snapshot commit
        for host in (self.env["services"][RTO_SERVICE]["production"], self.env["services"][RTO_SERVICE]["mirror"]):
            self.must(host, ["sh", "-c", "btrfs subvolume sync /srv && sync"])
        before = load()
        runs = [failover.emergency_run(index + 1) for index in range(self.args.rto_runs)]
        return {
            "replication": replicated,
            "runs": runs,
            "load_before": before,
            "load_after": load(),
            "total": median(r["total"] for r in runs),
            "flow_call": median(r["flow_call"] for r in runs),
            "answers_through_dns": median(r["answers_through_dns"] for r in runs),
            "steps": {name: median(r["step_seconds"].get(name) for r in runs) for name in runs[0]["step_seconds"]},
        }

    def failover_by_size(self) -> dict:
        failover = self.runs
        folder = self.data_dir(RTO_SERVICE) / "bench-rto"
        results = {}
        failover.reset_layout()
        for label, megabytes, start in (("small", self.args.small_mb, 0), ("big", self.args.big_mb, self.args.small_mb)):
            files = (megabytes - start) * 2**20 // FILE_BYTES
            began = time.perf_counter()
            write_random_files(folder / label, files, FILE_BYTES)
            os.sync()
            print(
                f"  {label}: app1 data now {megabytes} MiB ({files} files of {FILE_BYTES // 1024} KiB added in "
                f"{time.perf_counter() - began:.1f} s)",
                flush=True,
            )
            results[label] = {"megabytes": megabytes, **self.failover_runs(label, failover)}
        results["gap"] = round(results["big"]["total"] - results["small"]["total"], 3)
        results["gap_target"] = RTO_GAP_TARGET
        # the RTO data leaves production again, so that replicate --all below moves the fleet data only
        self.must(
            self.env["services"][RTO_SERVICE]["production"],
            ["rm", "-rf", "--", f"{self.env['services'][RTO_SERVICE]['data_path']}/bench-rto"],
        )
        return results

    # ----- 2. replicate --all -------------------------------------------------------------

    def fleet_run(self, force: bool = False) -> dict:
        """The ``replicate`` flow over every service, with each service's run and steps."""
        from flows.replicate import replicate

        before = self.runs.last_run_id()
        cpu, wall = time.process_time(), time.time()
        clock = time.perf_counter()
        results = replicate(force=force)
        seconds = time.perf_counter() - clock
        cpu_seconds = time.process_time() - cpu
        bad = {name: r for name, r in results.items() if r.get("outcome") != "ok"}
        if bad:
            raise RuntimeError(f"replicate --all: {bad}")
        services = {}
        for row in self.runs_since(before):
            steps = self.runs.step_rows(row.id)
            copy = next(s for s in steps if s["step"] == "copy")
            services[row.service] = {
                "start": epoch(row.started_at) - wall,
                "end": epoch(row.ended_at) - wall,
                "seconds": round(epoch(row.ended_at) - epoch(row.started_at), 3),
                "copy_start": copy["start"] - wall,
                "copy_end": copy["end"] - wall,
                "steps": {s["step"]: s["seconds"] for s in steps},
            }
        (first, a), (second, b) = sorted(services.items())[:2]
        overlap = min(a["copy_end"], b["copy_end"]) - max(a["copy_start"], b["copy_start"])
        return {
            "seconds": round(seconds, 3),
            "cpu_seconds": round(cpu_seconds, 3),
            "services": services,
            "copy_overlap_seconds": round(overlap, 3),
            "pair": [first, second],
        }

    def runs_since(self, run_id: int) -> list:
        from sqlmodel import select

        from hotspare.inventory.db import session
        from hotspare.inventory.models import RunRow

        with session() as db:
            rows = db.exec(select(RunRow).where(RunRow.id > run_id, RunRow.kind == "replicate").order_by(RunRow.id)).all()
            return [row.model_copy() for row in rows]

    def fleet_rep(self, scenario: str, index: int, names: list[str]) -> dict:
        bare_first = index % 2 == 0
        measured: dict = {"order": "bare > hotspare" if bare_first else "hotspare > bare"}
        for what in ("bare", "flow") if bare_first else ("flow", "bare"):
            if what == "bare":
                measured["bare"] = {name: round(self.bare_copy(name), 3) for name in names}
            else:
                measured["flow"] = self.fleet_run()
            os.sync()
        flow = measured["flow"]
        measured["overhead"] = {name: round(flow["services"][name]["seconds"] - measured["bare"][name], 3) for name in names}
        print(
            f"  {scenario} #{index + 1} ({measured['order']}): replicate --all {flow['seconds']:.2f} s, services "
            + ", ".join(
                f"{name} {flow['services'][name]['seconds']:.2f} s (copy {flow['services'][name]['steps'].get('copy')}, "
                f"bare {measured['bare'][name]:.2f})"
                for name in names
            )
            + f"; copy steps overlap {flow['copy_overlap_seconds']:.2f} s",
            flush=True,
        )
        return measured

    def fleet_replication(self) -> dict:
        names = sorted(service.name for service in self.fleet.services)
        files = self.args.fleet_mb * FLEET_FILES_PER_MIB
        size = self.args.fleet_mb * 2**20 // files
        written = {name: write_random_files(self.data_dir(name) / "bench-fleet", files, size) for name in names}
        os.sync()
        first = self.fleet_run(force=True)  # also takes the RTO data off the mirror's current copy
        for name in names:
            self.bare_copy(name)
        print(f"  first replicate --all {first['seconds']:.2f} s ({len(names)} services x {self.args.fleet_mb} MiB)", flush=True)
        scenarios = {}
        for scenario, change in (("1 % changed", True), ("nothing changed", False)):
            before = load()
            reps = []
            for index in range(self.args.reps):
                changed = {
                    name: rewrite_random_files(written[name], max(1, files // 100), size, self.rng) if change else 0
                    for name in names
                }
                reps.append({"files_changed": changed, **self.fleet_rep(scenario, index, names)})
            scenarios[scenario] = {
                "repetitions": reps,
                "load_before": before,
                "load_after": load(),
                **summarize_fleet(reps, names),
            }
        return {
            "services": names,
            "megabytes_each": self.args.fleet_mb,
            "files_each": files,
            "bounds": self.fleet.replication.model_dump(mode="json"),
            "first": first,
            "scenarios": scenarios,
        }

    def run(self) -> dict:
        self.setup()
        results = {"meta": {**run_meta(), "cpus": os.cpu_count(), "load_start": load(), "args": vars(self.args)}}
        if not self.args.skip_failover:
            print(f"\n1. Emergency failover of {RTO_SERVICE}: {self.args.small_mb} MiB vs {self.args.big_mb} MiB", flush=True)
            results["failover"] = self.failover_by_size()
        if not self.args.skip_fleet:
            print(f"\n2. replicate --all ({self.args.fleet_mb} MiB per service)", flush=True)
            results["fleet"] = self.fleet_replication()
            results["extrapolation"] = extrapolate(results["fleet"])
        results["meta"]["load_end"] = load()
        return results


# ---------------------------------------------------------------------------------------
# Summary, extrapolation and report


def summarize_fleet(reps: list[dict], names: list[str]) -> dict:
    return {
        "flow_seconds": median(r["flow"]["seconds"] for r in reps),
        "bare_sequential_seconds": median(sum(r["bare"].values()) for r in reps),
        "copy_overlap_seconds": median(r["flow"]["copy_overlap_seconds"] for r in reps),
        "overlapped_every_time": all(r["flow"]["copy_overlap_seconds"] > 0 for r in reps),
        "service_seconds": {name: median(r["flow"]["services"][name]["seconds"] for r in reps) for name in names},
        "copy_seconds": {name: median(r["flow"]["services"][name]["steps"].get("copy") for r in reps) for name in names},
        "bare_seconds": {name: median(r["bare"][name] for r in reps) for name in names},
        "overhead_seconds": {name: median(r["overhead"][name] for r in reps) for name in names},
        "overhead_per_service": median(value for r in reps for value in r["overhead"].values()),
        "cpu_per_service": median(r["flow"]["cpu_seconds"] / len(names) for r in reps),
        "steps": {
            step: median(r["flow"]["services"][name]["steps"].get(step) for r in reps for name in names)
            for step in reps[0]["flow"]["services"][names[0]]["steps"]
        },
    }


def extrapolate(fleet: dict) -> dict:
    """100 services of 1 GB, 1 % changed per 5 minutes, from this run's measurements.

    Per service: its median run inside replicate --all with 1 % changed (the data set here is
    1 GB / 10,000 files by default, so nothing is scaled; with another ``--fleet-mb`` the bare
    rsync part is scaled by file count and the row says so). 100 such runs take 100 x that / P
    seconds with P services at once, as long as the hosts keep up (each production server serves
    ``parallel_per_source`` at a time) and the orchestrator's CPU does (its CPU seconds per
    service, measured, times 100, against 300 s per core)."""
    one = fleet["scenarios"]["1 % changed"]
    files_here = fleet["files_each"]
    measured = statistics.median(one["service_seconds"].values())
    scale = EXTRAPOLATE["files"] / files_here
    bare_here = statistics.median(one["bare_seconds"].values())
    per_service = measured if scale == 1 else measured + bare_here * (scale - 1)
    source = (
        "measured here at this size"
        if scale == 1
        else f"scaled: run here {measured:.2f} s + bare rsync {bare_here:.2f} s x ({scale:.1f} - 1) for the file count"
    )
    cpu = one["cpu_per_service"]
    count, rpo = EXTRAPOLATE["services"], EXTRAPOLATE["rpo_seconds"]
    together = one["flow_seconds"]
    alone = sum(one["service_seconds"].values())
    rows = []
    for parallel in (1, 2, 4, 8):
        wall = count * per_service / parallel
        rows.append({"parallel": parallel, "wall_seconds": round(wall, 1), "within_rpo": wall <= rpo})
    return {
        **EXTRAPOLATE,
        "per_service_seconds": round(per_service, 2),
        "source": source,
        "bare_seconds": bare_here,
        "overhead_per_service": one["overhead_per_service"],
        "cpu_per_service": cpu,
        "orchestrator_cpu_seconds": round(count * cpu, 1),
        "orchestrator_cores": round(count * cpu / rpo, 2),
        "parallel_needed": math.ceil(count * per_service / rpo),
        "rows": rows,
        "measured_speedup": round(alone / together, 2) if together else None,
    }


def _s(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_report(results: dict) -> None:
    meta = results["meta"]
    print(f"\nLoad average at start {meta['load_start']}, at end {meta['load_end']} ({meta['cpus']} CPUs)")
    failover = results.get("failover")
    if failover:
        small, big = failover["small"], failover["big"]
        disks = meta["args"]
        print(
            f"\nEmergency failover of {RTO_SERVICE} (prod-east down -> mirror-west), medians of {len(small['runs'])} runs, seconds "
            f"[load {small['load_before']} -> {big['load_after']}; /srv data {disks.get('data_profile', 'raid10')} on 4 disks of "
            f"{disks.get('disk_gib') or 2:g} GiB]"
        )
        names = list(dict.fromkeys([*small["steps"], *big["steps"]]))
        rows = [(f"step: {name}", _s(small["steps"].get(name)), _s(big["steps"].get(name))) for name in names]
        rows += [
            ("flow call", _s(small["flow_call"]), _s(big["flow_call"])),
            ("app answers through DNS", _s(small["answers_through_dns"]), _s(big["answers_through_dns"])),
            ("TOTAL (answers and flow returned)", _s(small["total"]), _s(big["total"])),
            ("replication before the runs (not RTO)", _s(small["replication"]["seconds"]), _s(big["replication"]["seconds"])),
        ]
        table(("phase", f"{small['megabytes']} MiB", f"{big['megabytes']} MiB"), rows)
        print(
            f"  big - small: {failover['gap']:+.2f} s (target <= {RTO_GAP_TARGET:g} s: "
            f"{'met' if failover['gap'] <= RTO_GAP_TARGET else 'MISSED'}); per run totals: small "
            + ", ".join(_s(r["total"]) for r in small["runs"])
            + "; big "
            + ", ".join(_s(r["total"]) for r in big["runs"])
        )
    fleet = results.get("fleet")
    if not fleet:
        return
    names = fleet["services"]
    bounds = fleet["bounds"]
    print(
        f"\nreplicate --all over {', '.join(names)} ({fleet['megabytes_each']} MiB / {fleet['files_each']} files each; bounds: "
        f"{bounds['parallel_services']} at once, {bounds['parallel_per_source']} per production, {bounds['parallel_per_target']} per mirror), "
        f"medians of {len(next(iter(fleet['scenarios'].values()))['repetitions'])} runs, seconds"
    )
    header = (
        "scenario",
        "replicate --all",
        "bare, one by one",
        *[f"{n} run" for n in names],
        *[f"{n} copy" for n in names],
        *[f"{n} bare" for n in names],
        "copy overlap",
        "overlapped",
        "overhead/service",
        "CPU/service",
        "load",
    )
    rows = []
    for scenario, s in fleet["scenarios"].items():
        rows.append(
            (
                scenario,
                _s(s["flow_seconds"]),
                _s(s["bare_sequential_seconds"]),
                *[_s(s["service_seconds"][n]) for n in names],
                *[_s(s["copy_seconds"][n]) for n in names],
                *[_s(s["bare_seconds"][n]) for n in names],
                _s(s["copy_overlap_seconds"]),
                "yes" if s["overlapped_every_time"] else "NO",
                _s(s["overhead_per_service"]),
                _s(s["cpu_per_service"]),
                f"{s['load_before'][0]}->{s['load_after'][0]}",
            )
        )
    table(header, rows)
    print(
        "  overhead/service = a service's run in replicate --all minus its bare `rsync -a` over SSH in the same repetition;"
        " CPU/service = this process's CPU seconds during replicate --all / services"
    )
    last = fleet["scenarios"]["1 % changed"]["repetitions"][-1]["flow"]
    print("  last 1 %-changed run, seconds after the flow call (run start-end, copy step start-end):")
    for name in names:
        s = last["services"][name]
        print(f"    {name}: run {s['start']:.2f}-{s['end']:.2f}, copy {s['copy_start']:.2f}-{s['copy_end']:.2f}")
    steps = fleet["scenarios"]["1 % changed"]["steps"]
    print("  per-service steps (1 % changed, median s): " + ", ".join(f"{k} {_s(v)}" for k, v in steps.items()))
    x = results["extrapolation"]
    print(
        f"\nEXTRAPOLATION (not measured): {x['services']} services x {x['gigabytes']:g} GB ({x['files']} files), "
        f"{x['change_percent']:g} % changed every {x['rpo_seconds']:.0f} s"
    )
    print(
        f"  per service {x['per_service_seconds']:.2f} s ({x['source']}): bare rsync {x['bare_seconds']:.2f} s + orchestration "
        f"{x['overhead_per_service']:.2f} s; orchestrator CPU {x['cpu_per_service']:.2f} s per service, "
        f"{x['orchestrator_cpu_seconds']:.0f} s for 100 = {x['orchestrator_cores']:.2f} of a core per 5 minutes"
    )
    print(
        f"  measured here: two services at once finished {x['measured_speedup']}x faster than their runs one after the other would"
    )
    table(
        ("services at once", "wall for 100", "within 5 min"),
        [(r["parallel"], f"{r['wall_seconds']:.0f} s", "yes" if r["within_rpo"] else "no") for r in x["rows"]],
    )
    print(
        f"  services at once needed for 100 inside {x['rpo_seconds']:.0f} s: {x['parallel_needed']} (each production server serves "
        "parallel_per_source at a time: that many production servers, or a higher per-source bound; "
        "the fleet file's replications_per_day: 288)"
    )


if __name__ == "__main__":
    sys.exit(main())
