"""Benchmark: replication on the rsync path against bare ``rsync -a`` as the number of files grows,
and the orchestrator's peak memory for a simulated one-million-file service.

    .venv/bin/python bench/listing_bench.py --slot 4                              # 10,000 and 100,000 files, 1 GB each, 3 reps
    .venv/bin/python bench/listing_bench.py --slot 4 --files 2000 --mb 20 --reps 1   # a dry run (~3 min)
    .venv/bin/python bench/listing_bench.py --slot 4 --only-memory                # the million-file simulation only
    .venv/bin/python bench/listing_bench.py --slot 4 --files 100000 --reps 1 --baseline /tmp/before  # before/after

Starts its own lab, a Prefect test server and a temporary HOTSPARE_HOME (bench/common.py's
``lab_and_prefect``, as bench/replication_bench.py), loads the lab's fleet with rsync's copies
(``copy_backend: btrfs-snapshot``: snapshots filled by rsync, verified by the tree comparison).
For each ``--files`` count app1's data gets that many random files (``--mb`` in all, 100 per
folder); one first replication and one bare pull make both targets whole. Then per scenario
(nothing changed; 1 % of the files rewritten) and repetition, in alternating order:

- **bare**: ``rsync -a --relative prod:PATHS /srv/bench-bare/`` run on the mirror with the lab's
  unrestricted key (no key per transfer, no confinement, no snapshot, no verification);
- **bare -aHAX**: the same pull with the copy's own fidelity flags (``-aHAX --numeric-ids``: hard
  links, ACLs, extended attributes) into a target of its own: what the fidelity itself costs;
- **hotspare**: the whole ``hotspare replicate app1`` command in a process of its own (CLI wall:
  Python's start, the flow run, everything), its run record's duration (``run`` row) and verify
  step, and the command's peak memory (its own VmHWM, written as it exits).

Targets (issue 23): nothing changed at 50,000-100,000 files, the command <= 2 x bare + 1 s;
1 % changed <= 1.3 x bare.

**The tree comparison alone** (the verify step's walk of both trees), then, on the current copy as
a replication with nothing changed runs it (a new rolling pass: every file listed and compared,
the pass's first slice hashed on both hosts), through the real pipe, against the walk in C it
cannot do without: ``find -type f -printf`` of production's paths and of the copy, both hosts at
once (``-fprintf /dev/null``), interleaved. ``--baseline DIR`` measures the programs of another
checkout's ``hotspare/planning/tree_comparison.py`` beside this one's in the same run (before and
after a change, on the same lab and load).

**Memory, a million files, simulated**: the verification's tree comparison
(``planning/tree_comparison.py``) run between the lab's real production and mirror over SSH by
the real pipe (``adapters/ssh.pipe``), with one change to both programs: their listing holds
``--million`` made-up files (``/srv/app1/data/dNNNNN/fNNNNNNN``, 4 KiB, distinct mtimes) instead
of listing a disk, so production streams a million records and the mirror merges them with a
million of its own. Measured in a fresh process: its peak RSS, once with a million and once with
none (the process's own floor: Python, paramiko, the fleet). For contrast, the design this
replaces (both ``find`` listings parsed into dictionaries here) is simulated in another fresh
process on the same made-up million lines. Target: <= 200 MiB for a million files.

Prints the tables with the targets and writes bench/out/listing.json. A benchmark, not a test:
medians on a shared machine.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
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
OUT = ROOT / "bench" / "out" / "listing.json"
BARE = "/srv/bench-bare"
# The same pull with the flags a replication's copy uses (hard links, ACLs, extended attributes,
# numeric ids: ``planning/replication.rsync_copy_argv``): what the fidelity itself costs.
SAME_FLAGS = "/srv/bench-bare-same-flags"
NOTHING_FACTOR, NOTHING_PLUS, CHANGED_FACTOR, MEMORY_MIB = 2.0, 1.0, 1.3, 200
# The CLI, writing its peak RSS (VmHWM: this process's own, not inherited from the one that forked it,
# as ``ru_maxrss`` would be) to the file named by the first argument as it exits.
CLI = (
    "import atexit, sys\n"
    "def peak(path=sys.argv.pop(1)):\n"
    "    status = open('/proc/self/status').read()\n"
    "    open(path, 'w').write(status.split('VmHWM:')[1].split()[0])\n"
    "atexit.register(peak)\n"
    "from hotspare.cli import main\n"
    "sys.exit(main(sys.argv[1:]))"
)

# The simulation's listing: made-up files instead of a disk, in order (replaces ``sorted_listing``
# in both programs, ``planning/tree_programs.LISTING_FUNCTION``).
SIMULATED_LISTING = r"""def sorted_listing(roots, real):
    listed = tempfile.TemporaryFile()
    for start in range(0, COUNT, 10000):
        listed.write(b"".join(b"4096 1700000000.%09d0 \x01srv\x01app1\x01data\x01d%05d\x01f%07d\0" % (number, number // 1000, number)
                              for number in range(start, min(start + 10000, COUNT))))
    listed.seek(0)
    return listed

"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", default="10000,100000", help="file counts, comma-separated (default 10000,100000)")
    parser.add_argument("--mb", type=int, default=1000, help="MiB of data at each count (default 1000)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per scenario (default 3)")
    parser.add_argument("--million", type=int, default=1_000_000, help="files of the memory simulation")
    parser.add_argument("--only-memory", action="store_true", help="only the million-file memory simulation")
    parser.add_argument("--slot", type=int, default=None)
    parser.add_argument(
        "--replications-per-day",
        type=float,
        default=None,
        help="the fleet's replications_per_day, which sizes the rolling slice (default: the lab's, 2; 1440: once a minute)",
    )
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--baseline", help="a checkout whose tree comparison programs are measured beside these")
    parser.add_argument("--comparisons", type=int, default=3, help="repetitions of the tree comparison alone")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--simulate", choices=["pipe", "listings"], help=argparse.SUPPRESS)  # the child's part
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.simulate:
        return simulate(args.simulate, args.count)
    home = Path(tempfile.mkdtemp(prefix="hotspare-bench."))
    isolate_environment(home)
    # The mirror keeps the copy, its working tree and both bare targets: 4 GiB members (8 GiB of
    # RAID10, sparse) where the default 2 GiB would refuse the copy for room at 1 GB of data.
    os.environ.setdefault("HOTSPARE_LAB_DISK_GIB", "4")
    started = time.monotonic()
    results: dict = {"meta": run_meta(), "counts": {}, "comparison": {}, "memory": {}}
    results["meta"]["replications_per_day"] = args.replications_per_day or 2.0
    with lab_and_prefect(home, args.slot, args.keep, started) as (lab, env):
        bench = Bench(lab, env, args)
        try:
            bench.setup()
            if not args.only_memory:
                for count in [int(text) for text in args.files.split(",")]:
                    results["counts"][count] = bench.at_count(count)
                    print_counts(results)
                    results["comparison"][count] = bench.comparison_alone()
                    print_comparison(results["comparison"])
            results["memory"] = bench.memory()
        finally:
            bench.cleanup()
    results["meta"]["total_seconds"] = round(time.monotonic() - started, 1)
    print_counts(results)
    print_comparison(results["comparison"])
    print_memory(results["memory"])
    write_results(results, args.out)
    return 0


class Bench:
    def __init__(self, lab, env: dict, args) -> None:
        self.lab, self.env, self.args = lab, env, args
        service = env["services"][SERVICE]
        self.production, self.mirror = service["production"], service["mirror"]
        self.remote_data = service["data_path"] + "/bench"
        self.data = Path(env["hosts"][self.production]["root"]) / self.remote_data.lstrip("/")
        self.rng = random.Random(20261206)
        self.peer = None
        self.files: list[Path] = []

    def ssh(self, host: str, argv: list[str], stdin: bytes = b"") -> str:
        ran = subprocess.run(ssh_argv(self.env, host, argv), input=stdin, capture_output=True, timeout=3600, check=False)
        if ran.returncode != 0:
            raise RuntimeError(
                f"on {host}: {shlex.join(argv)[:200]} exited {ran.returncode}: {ran.stderr.decode(errors='replace')[-400:]}"
            )
        return ran.stdout.decode(errors="replace")

    def setup(self) -> None:
        import yaml

        from hotspare import access
        from hotspare.cli import main as cli
        from hotspare.planning import replication as plan

        self.lab.register_blocks()
        document = yaml.safe_load(Path(self.env["fleet_file"]).read_text())
        document["replication"] = {**(document.get("replication") or {}), "copy_backend": "btrfs-snapshot"}
        if self.args.replications_per_day:  # the rolling slice follows the cadence: 1440 is the one a minute
            document["replication"]["replications_per_day"] = self.args.replications_per_day
        fleet_file = Path(os.environ["HOTSPARE_HOME"]) / "fleet.yaml"
        fleet_file.write_text(yaml.safe_dump(document, sort_keys=False))
        if cli(["fleet", "load", str(fleet_file)]) != 0:
            raise RuntimeError("hotspare fleet load failed")
        fleet = access.loaded_fleet()
        self.paths = plan.source_paths(fleet.service(SERVICE).model_dump(mode="json"))
        production = fleet.server(self.production)
        # the bare pull: the lab's unrestricted client key on the mirror's tmpfs, pinned known_hosts
        self.peer = plan.peer_access(
            f"bench-{os.getpid()}-pull", self.env["ssh"]["user"], production.address, production.ssh_port
        )
        known = f"{access.endpoint(fleet, self.production).known_hosts_line()}\n".encode()
        self.ssh(self.mirror, ["install", "-d", "-m", "0700", self.peer.directory])
        self.ssh(
            self.mirror,
            ["sh", "-c", 'umask 077 && cat > "$1"', "sh", self.peer.key_path],
            Path(self.env["ssh"]["key"]).read_bytes(),
        )
        self.ssh(self.mirror, ["sh", "-c", 'umask 077 && cat > "$1"', "sh", self.peer.known_hosts_path], known)

    def cleanup(self) -> None:
        if self.peer is not None:
            subprocess.run(
                ssh_argv(self.env, self.mirror, ["rm", "-rf", "--", self.peer.directory]),
                timeout=60,
                check=False,
                capture_output=True,
            )

    def bare(self, same_flags: bool = False) -> float:
        """The bare pull; ``same_flags``: with the copy's own ``-aHAX --numeric-ids`` into a target of its own."""
        flags = ["-aHAX", "--numeric-ids"] if same_flags else ["-a"]
        target = SAME_FLAGS if same_flags else BARE
        argv = ["rsync", *flags, "--relative", "-e", self.peer.ssh_command(), *self.peer.remotes(self.paths), target + "/"]
        started = time.perf_counter()
        self.ssh(self.mirror, argv)
        return time.perf_counter() - started

    def hotspare(self) -> dict:
        """``hotspare replicate app1`` in a process of its own: wall, run record, verify step, peak RSS."""
        from prefect.settings import PREFECT_API_URL

        from hotspare.inventory import runs

        env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(ROOT)}
        peak_file = Path(os.environ["HOTSPARE_HOME"]) / "cli-peak"
        started = time.perf_counter()
        child = subprocess.run(
            [sys.executable, "-c", CLI, str(peak_file), "replicate", SERVICE],
            env=env,
            capture_output=True,
            timeout=3600,
            check=False,
        )
        wall = time.perf_counter() - started
        if child.returncode != 0:
            raise RuntimeError(f"hotspare replicate failed: {(child.stdout + child.stderr).decode(errors='replace')[-1500:]}")
        run = _last_run()
        steps = {step["step"]: step["seconds"] for step in runs.step_timings(run.id)}
        verification = (run.details or {}).get("verification", {})
        return {
            "wall": wall,
            "record": (run.ended_at - run.started_at).total_seconds(),
            "verify": steps.get("verify"),
            "copy": steps.get("copy"),
            "steps": steps,
            "peak_mib": int(peak_file.read_text()) / 1024,
            "compared_files": verification.get("compared_files"),
            "total_files": verification.get("total_files"),
        }

    def at_count(self, count: int) -> dict:
        self.ssh(self.production, ["rm", "-rf", "--", self.remote_data])
        self.ssh(self.mirror, ["rm", "-rf", "--", BARE, SAME_FLAGS])
        self.files = write_random_files(self.data, count, self.args.mb * 2**20 // count)
        os.sync()
        print(f"{count} files written; first copies", flush=True)
        self.bare()
        self.bare(same_flags=True)
        first = self.hotspare()
        print(f"  first replication {first['wall']:.1f} s (whole tree), bare pull done", flush=True)
        scenarios = {}
        for scenario in ("nothing changed", "1 % changed"):
            reps = []
            for rep in range(self.args.reps):
                if scenario == "1 % changed":
                    rewrite_random_files(self.files, max(1, count // 100), self.args.mb * 2**20 // count, self.rng)
                measured: dict = {}
                order = ("bare", "same flags", "hotspare")
                for name in order if rep % 2 == 0 else reversed(order):
                    if name == "hotspare":
                        measured[name] = self.hotspare()
                    else:
                        measured[name] = self.bare(same_flags=name == "same flags")
                reps.append(measured)
                print(
                    f"  {scenario} #{rep + 1}: bare {measured['bare']:.2f} s, -aHAX {measured['same flags']:.2f} s, hotspare {measured['hotspare']['wall']:.2f} s "
                    f"(record {measured['hotspare']['record']:.2f} s, verify {measured['hotspare']['verify']} s, "
                    f"{measured['hotspare']['peak_mib']:.0f} MiB; steps {measured['hotspare']['steps']})",
                    flush=True,
                )
            scenarios[scenario] = summarize(reps)
        return scenarios

    def comparison_alone(self) -> dict:
        """The tree comparison by itself on the current copy (a new pass, nothing changed), the
        walk in C on both hosts at once, and the baseline's programs, interleaved; seconds each."""
        from hotspare import access
        from hotspare.inventory import copies
        from hotspare.planning import replication as plan
        from hotspare.planning import tree_comparison as tree_plan
        from hotspare.planning.replication_schedule import replications_per_day_of
        from hotspare.planning.verification_scope import runs_left

        fleet = access.loaded_fleet()
        current = copies.current_copy(SERVICE)
        tree = plan.copy_tree(SERVICE, current.id)
        runs = runs_left(fleet.replication.full_verification_days, replications_per_day_of(fleet, SERVICE), None, time.time())
        programs = {"hotspare": tree_plan}
        if self.args.baseline:
            programs["baseline"] = _programs_of(self.args.baseline)
        measured: dict = {name: [] for name in ["find, both hosts", *programs]}
        answers = {}
        for rep in range(self.args.comparisons):
            order = list(measured) if rep % 2 == 0 else list(reversed(measured))
            for name in order:
                if name == "find, both hosts":
                    measured[name].append(self.walk_in_c(fleet, tree))
                    continue
                module = programs[name]
                request = module.Request(
                    tuple(self.paths),
                    tuple(fleet.service(SERVICE).exclude),
                    runs=runs,
                    max_records=module.record_limit(current.total_files or 0),
                )
                started = time.perf_counter()
                with access.connect(fleet, self.production) as production, access.connect(fleet, self.mirror) as mirror:
                    piped = production.pipe_into(
                        module.production_argv(),
                        module.production_header(request),
                        mirror,
                        module.mirror_argv(),
                        module.mirror_header(request, tree),
                        timeout=3600,
                    )
                measured[name].append(time.perf_counter() - started)
                if piped.sink.exit_status != 0:
                    raise RuntimeError(f"{name}'s comparison failed: {piped.sink.stderr_tail[-400:]}")
                answer = module.parse_answer(piped.sink.text)
                answers[name] = {"files": answer.files, "hashed": answer.hashed_files, "differences": answer.difference_count}
            print(f"  comparison alone #{rep + 1}: " + ", ".join(f"{n} {v[-1]:.2f} s" for n, v in measured.items()), flush=True)
        return {
            "seconds": {name: statistics.median(values) for name, values in measured.items()},
            "reps": measured,
            "answers": answers,
            "runs": runs,
            "load": os.getloadavg(),
        }

    def walk_in_c(self, fleet, tree: str) -> float:
        """``find -printf`` of production's paths and of the copy, both at once: the C floor."""
        from concurrent.futures import ThreadPoolExecutor

        from hotspare import access

        def walk(server: str, prefix: str) -> None:
            argv = ["find", *[prefix + path for path in self.paths], "-type", "f", "-fprintf", "/dev/null", "%s %T@ %p\\0"]
            with access.connect(fleet, server) as connection:
                connection.run(argv, timeout=3600)

        started = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            for future in [pool.submit(walk, self.production, ""), pool.submit(walk, self.mirror, tree)]:
                future.result()
        return time.perf_counter() - started

    def memory(self) -> dict:
        from prefect.settings import PREFECT_API_URL

        env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(ROOT)}

        def child(kind: str, count: int) -> dict:
            ran = subprocess.run(
                [sys.executable, __file__, "--simulate", kind, "--count", str(count)],
                env=env,
                capture_output=True,
                timeout=3600,
                check=False,
            )
            if ran.returncode != 0:
                raise RuntimeError(f"simulation {kind} {count} failed: {ran.stderr.decode(errors='replace')[-1500:]}")
            return json.loads(ran.stdout.decode().strip().splitlines()[-1])

        found = {
            "floor": child("pipe", 0),
            "pipe": child("pipe", self.args.million),
            "listings": child("listings", self.args.million),
            "files": self.args.million,
        }
        print(f"memory: {json.dumps(found)}", flush=True)
        return found


def _last_run():
    from sqlmodel import select

    from hotspare.inventory.db import session
    from hotspare.inventory.models import RunRow

    with session() as db:
        return db.exec(select(RunRow).where(RunRow.kind == "replicate").order_by(RunRow.id.desc())).first()


def summarize(reps: list[dict]) -> dict:
    def median(values):
        values = [value for value in values if value is not None]
        return statistics.median(values) if values else None

    hotspare = [rep["hotspare"] for rep in reps]
    return {
        "reps": reps,
        "bare": median([rep["bare"] for rep in reps]),
        "same_flags": median([rep.get("same flags") for rep in reps]),
        **{key: median([run[key] for run in hotspare]) for key in ("wall", "record", "verify", "copy", "peak_mib")},
        "compared_files": hotspare[-1]["compared_files"],
        "total_files": hotspare[-1]["total_files"],
    }


def simulate(kind: str, count: int) -> int:
    """A fresh process's peak memory for a ``count``-file tree comparison (``pipe``) or for the
    replaced design's two parsed listings (``listings``); prints one JSON line."""
    started = time.perf_counter()
    if kind == "listings":
        from hotspare.planning import verification_scope as scope_plan

        lines = "".join(
            f"1700000000.{number:09d}\t4096\t/srv/app1/data/d{number // 1000:05d}/f{number:07d}\n" for number in range(count)
        )
        production = scope_plan.parse_sized_listing(lines)
        copy = scope_plan.parse_sized_listing(lines)
        del lines
        extra = {"entries": len(production) + len(copy)}
    else:
        from hotspare import access
        from hotspare.inventory import copies
        from hotspare.planning import tree_comparison as tree_plan

        fleet = access.loaded_fleet()
        row = copies.service_row(SERVICE)
        source, target = row.active_server, row.mirror_server
        from hotspare.planning.tree_programs import LISTING_FUNCTION

        walk = SIMULATED_LISTING.replace("COUNT", str(count))
        lister = tree_plan.LISTER.replace(LISTING_FUNCTION, walk)
        comparer = tree_plan.COMPARER.replace(LISTING_FUNCTION, walk)
        assert lister != tree_plan.LISTER and comparer != tree_plan.COMPARER, "the programs' listing moved"
        request = tree_plan.Request(("/srv/app1/data",), max_records=tree_plan.record_limit(count))
        with access.connect(fleet, source) as production, access.connect(fleet, target) as mirror:
            piped = production.pipe_into(
                ["python3", "-IS", "-c", lister],
                tree_plan.production_header(request),
                mirror,
                ["python3", "-IS", "-c", comparer],
                tree_plan.mirror_header(request, "/"),
                timeout=3600,
            )
        if piped.sink.exit_status != 0:
            raise RuntimeError(piped.sink.stderr_tail)
        answer = tree_plan.parse_answer(piped.sink.text)
        extra = {"files": answer.files, "differences": answer.difference_count, "relayed_bytes": piped.relayed_bytes}
    # VmHWM: this process's own peak (ru_maxrss would start from the forking parent's size)
    peak = int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]) / 1024
    print(json.dumps({"peak_mib": round(peak, 1), "seconds": round(time.perf_counter() - started, 2), **extra}))
    return 0


def _programs_of(checkout: str):
    """Another checkout's tree comparison module (it must stand alone: json and dataclasses only)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "baseline_tree_comparison", Path(checkout) / "hotspare" / "planning" / "tree_comparison.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def print_comparison(comparison: dict) -> None:
    rows = []
    for count, found in comparison.items():
        floor = found["seconds"]["find, both hosts"]
        for name, seconds in found["seconds"].items():
            answer = found["answers"].get(name, {})
            rows.append(
                [
                    f"{int(count):,}",
                    name,
                    f"{seconds:.2f}",
                    _ratio(seconds, floor),
                    f"{answer.get('hashed', '-')}/{answer.get('files', '-')}" if answer else "-",
                    f"{found['load'][0]:.1f}",
                ]
            )
    if rows:
        print("\nThe tree comparison alone (medians, seconds) against the walk in C on both hosts at once")
        table(["files", "what", "seconds", "x find", "hashed/files", "load (1 min)"], rows)


def _ratio(value, base) -> str:
    return f"{value / base:.2f}x" if value is not None and base else "-"


def print_counts(results: dict) -> None:
    rows = []
    for count, scenarios in results["counts"].items():
        for scenario, found in scenarios.items():
            bare, wall = found["bare"], found["wall"]
            if scenario == "nothing changed":
                target, met = (
                    f"<= {NOTHING_FACTOR:g} x bare + {NOTHING_PLUS:g} s = {NOTHING_FACTOR * bare + NOTHING_PLUS:.2f} s",
                    wall <= NOTHING_FACTOR * bare + NOTHING_PLUS,
                )
            else:
                target, met = f"<= {CHANGED_FACTOR:g} x bare = {CHANGED_FACTOR * bare:.2f} s", wall <= CHANGED_FACTOR * bare
            rows.append(
                [
                    f"{int(count):,}",
                    scenario,
                    f"{bare:.2f}",
                    f"{found['same_flags']:.2f}" if found.get("same_flags") is not None else "-",
                    f"{wall:.2f}",
                    _ratio(wall, bare),
                    f"{found['record']:.2f}",
                    f"{found['copy']:.2f}" if found["copy"] is not None else "-",
                    f"{found['verify']:.2f}" if found["verify"] is not None else "-",
                    f"{found['compared_files']}/{found['total_files']}",
                    f"{found['peak_mib']:.0f}",
                    target,
                    "met" if met else "MISSED",
                ]
            )
    if rows:
        print(
            "\nMedians: bare `rsync -a` pull vs the whole `hotspare replicate app1` command (seconds; "
            f"{results['meta'].get('replications_per_day', 2.0):g} replications a day size the rolling slice)"
        )
        table(
            [
                "files",
                "scenario",
                "bare rsync",
                "bare -aHAX",
                "hotspare CLI",
                "ratio",
                "run record",
                "copy step",
                "verify step",
                "hashed/files",
                "peak MiB",
                "target (CLI)",
                "",
            ],
            rows,
        )


def print_memory(memory: dict) -> None:
    if not memory:
        return
    files = memory["files"]
    print(f"\nOrchestrator peak memory, {files:,} files (SIMULATED listing: made-up names, see the docstring)")
    table(
        ["what", "peak MiB", "seconds", "note"],
        [
            [
                "tree comparison, 0 files (the process's floor)",
                f"{memory['floor']['peak_mib']:.0f}",
                f"{memory['floor']['seconds']}",
                "",
            ],
            [
                f"tree comparison, {files:,} files",
                f"{memory['pipe']['peak_mib']:.0f}",
                f"{memory['pipe']['seconds']}",
                f"{memory['pipe']['relayed_bytes'] / 2**20:.0f} MiB piped through; target <= {MEMORY_MIB} MiB: "
                + ("met" if memory["pipe"]["peak_mib"] <= MEMORY_MIB else "MISSED"),
            ],
            [
                f"replaced design: two parsed listings of {files:,}",
                f"{memory['listings']['peak_mib']:.0f}",
                f"{memory['listings']['seconds']}",
                "for contrast",
            ],
        ],
    )


if __name__ == "__main__":
    raise SystemExit(main())
