"""Benchmark: where a replication's time goes besides verification, at many files: rsync's own
options against bare ``rsync -a``, the transfer view, and each remote command of the preflight,
the copy step and the finish, all on the same data in the same run.

    .venv/bin/python bench/copy_step_bench.py --slot 6                            # 100,000 files, 1 GB, 3 reps
    .venv/bin/python bench/copy_step_bench.py --slot 6 --files 2000 --mb 20 --reps 1  # a dry run (~3 min)

Starts its own lab, a Prefect test server and a temporary HOTSPARE_HOME (bench/common.py), loads
the lab's fleet with rsync's copies (``copy_backend: btrfs-snapshot``), fills app1's data with
``--files`` random files (``--mb`` in all) and makes one first replication and one pull per
variant. Then, with nothing changed and then with 1 % rewritten, per repetition in alternating
order, each timed on the mirror itself (``date +%s%N`` around the command):

- ``bare -a``: ``rsync -a --relative prod:PATHS`` with the lab's unrestricted key (the target);
- ``bare -aHAX``: the same plus ``-HAX --numeric-ids``: what hard links, ACLs and extended
  attributes cost rsync itself;
- ``bare, copy options``: hotspare's copy options (``-aHAX --numeric-ids --delete --partial
  --mkpath --stats --itemize-changes``) with the unrestricted key;
- ``view -a``: ``rsync -a`` through a real transfer key (view + rsync's daemon, chrooted);
- ``view, copy argv``: hotspare's exact copy argv (``rsync_copy_argv``) through a transfer key;
- ``hotspare``: ``replicate_service("app1")`` in this process, with every remote command it sends
  recorded (bench/common.py's ``SshRecorder``) and attributed to its steps;
- before and after this change, through hotspare's SSH adapter: production's preflight program
  with its parse here (one size per file, or two totals), and the walk that finds a copy's
  nested subvolumes before pruning it (every file, or ``find -xdev`` inside one subvolume).

Prints the medians and writes bench/out/copy_step.json. A benchmark, not a test: medians on a
shared machine (the load average is printed with them).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
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
    table,
    write_random_files,
    write_results,
)
from bench.replication_bench import Bench as ReplicationBench  # noqa: E402

SERVICE = "app1"
OUT = ROOT / "bench" / "out" / "copy_step.json"
COPY_OPTIONS = ["--numeric-ids", "--delete", "--partial", "--mkpath", "--stats", "--itemize-changes", "--timeout=60"]
VARIANTS = ("bare -a", "bare -aHAX", "bare, copy options", "view -a", "view, copy argv", "hotspare")
# Programs before and after this change, each run from here through hotspare's SSH adapter (the
# preflight's production program with its parse here; the walk that finds a copy's nested subvolumes).
PROGRAMS = ("preflight production (before)", "preflight production (after)", "prune walk (before)", "prune walk (after)")
BEFORE_PRODUCTION = (
    'for path do shift; if [ -d "$path" ]; then set -- "$@" "$path"; else printf "missing=%s\\n" "$path"; fi; done; '
    'echo sizes; if [ "$#" -gt 0 ]; then find "$@" -type f -printf "%s\\n" || exit 3; fi; '
    'printf "clock=%s\\n" "$(date +%s.%N)"'
)


class Bench(ReplicationBench):
    def setup(self) -> None:
        import yaml

        from hotspare.cli import main as cli

        document = yaml.safe_load(Path(self.env["fleet_file"]).read_text())
        document["replication"] = {**(document.get("replication") or {}), "copy_backend": "btrfs-snapshot"}
        fleet_file = Path(os.environ["HOTSPARE_HOME"]) / "fleet.yaml"
        fleet_file.write_text(yaml.safe_dump(document, sort_keys=False))
        self.env = {**self.env, "fleet_file": str(fleet_file)}
        if cli(["fleet", "load", str(fleet_file)]) != 0:
            raise RuntimeError("hotspare fleet load failed")
        super().setup()

    def bare(self, options: list[str], target: str) -> float:
        peer = self.pull_peer
        argv = ["rsync", *options, "--relative", "-e", peer.ssh_command(), *peer.remotes(self.paths), target + "/"]
        return self.timed_on(self.mirror, argv, ok=(0, 24))["seconds"]

    def view(self, build) -> float:
        return self.scoped("bench-view", build, ok=(0, 24))["seconds"]

    def variant(self, name: str) -> dict:
        from hotspare.planning import replication as plan

        if name == "bare -a":
            return {"seconds": self.bare(["-a"], "/srv/bench-a")}
        if name == "bare -aHAX":
            return {"seconds": self.bare(["-aHAX", "--numeric-ids"], "/srv/bench-hax")}
        if name == "bare, copy options":
            return {"seconds": self.bare(["-aHAX", *COPY_OPTIONS], "/srv/bench-options")}
        if name == "view -a":
            return {
                "seconds": self.view(
                    lambda peer: [
                        "rsync",
                        "-a",
                        "--relative",
                        "-e",
                        peer.ssh_command(),
                        *peer.sources(self.paths),
                        "/srv/bench-view/",
                    ]
                )
            }
        if name == "view, copy argv":
            return {
                "seconds": self.view(
                    lambda peer: plan.rsync_copy_argv(
                        peer, self.paths, "/srv/bench-argv/tree", None, self.excludes, "/srv/bench-argv"
                    )
                )
            }
        if name in PROGRAMS:
            return {"seconds": self.program(name)}
        return self.replicate()

    def program(self, name: str) -> float:
        from hotspare import access
        from hotspare.inventory import copies
        from hotspare.planning import preflight_facts
        from hotspare.planning import replication as plan

        data = [path.rstrip("/") for path in self.fleet.service(SERVICE).data_paths]
        if name.startswith("preflight"):
            host = self.production
            argv = (
                ["sh", "-c", BEFORE_PRODUCTION, "sh", *data] if "before" in name else preflight_facts.production_facts_argv(data)
            )
        else:
            host = self.mirror
            copy = plan.copy_root(SERVICE, copies.service_row(SERVICE).current_copy_id)
            walk = ["-depth"] if "before" in name else ["-xdev", "-prune"]
            argv = ["find", copy, "-mindepth", "1", *walk[:1], "-type", "d", "-inum", "256", *walk[1:]]
        with access.connect(self.fleet, host) as connection:
            started = time.perf_counter()
            output = connection.run(argv, timeout=600).text
            if name.startswith("preflight"):
                totals = (
                    plan.parse_file_sizes(output.partition("sizes\n")[2].rpartition("clock=")[0])
                    if "before" in name
                    else preflight_facts.parse_production_facts(output).totals
                )
                assert totals.files >= self.args.files, totals
            return time.perf_counter() - started

    def replicate(self) -> dict:
        """``replicate_service`` here: wall, run record, step timings, each remote command per step."""
        from sqlmodel import select

        from flows.replicate import replicate_service
        from hotspare.inventory import runs
        from hotspare.inventory.db import session
        from hotspare.inventory.models import RunRow, StepRow

        wall_start = time.time()
        result = replicate_service(SERVICE)
        wall_end = time.time()
        if result["outcome"] != "ok":
            raise RuntimeError(f"replication failed: {result}")
        with session() as db:
            row = db.exec(select(RunRow).where(RunRow.kind == "replicate").order_by(RunRow.id.desc())).first()
            steps = {step["step"]: step["seconds"] for step in runs.step_timings(row.id)}
            rows = [
                (step.name, _epoch(step.started_at), _epoch(step.ended_at))
                for step in db.exec(select(StepRow).where(StepRow.run_id == row.id)).all()
                if step.ended_at
            ]
            record = (row.ended_at - row.started_at).total_seconds()
        commands: dict = {}
        for name, start, end in rows:
            for event in self.recorder.between(start, end, slack=0.01):
                if event["kind"] == "run":
                    key = f"{name}: {event['host']}: {' '.join(event['label'].split())}"
                    commands[key] = commands.get(key, 0.0) + event["end"] - event["start"]
        return {"seconds": record, "wall": wall_end - wall_start, "steps": steps, "commands": commands}

    def scenario(self, name: str, reps: int) -> dict:
        found: dict = {variant: [] for variant in (*VARIANTS, *PROGRAMS)}
        for rep in range(reps):
            if name == "1 % changed":
                rewrite_random_files(self.file_names, max(1, len(self.file_names) // 100), self.file_size, self.rng)
            order = (*VARIANTS, *PROGRAMS)
            for variant in order if rep % 2 == 0 else tuple(reversed(order)):
                found[variant].append(self.variant(variant))
            print(f"  {name} #{rep + 1}: " + ", ".join(f"{v} {found[v][-1]['seconds']:.2f} s" for v in VARIANTS), flush=True)
            print(f"    hotspare steps {found['hotspare'][-1]['steps']}", flush=True)
        return found


def _epoch(moment) -> float:
    from bench.common import epoch

    return epoch(moment)


def median(values):
    values = [value for value in values if value is not None]
    return statistics.median(values) if values else None


def report(results: dict) -> None:
    for scenario, found in results["scenarios"].items():
        bare = median([run["seconds"] for run in found["bare -a"]])
        print(f"\n{scenario}, {results['files']:,} files: medians of {len(found['bare -a'])} (seconds, on the mirror)")
        table(
            ["variant", "seconds", "x bare -a"],
            [
                [v, f"{median([r['seconds'] for r in found[v]]):.2f}", f"{median([r['seconds'] for r in found[v]]) / bare:.2f}x"]
                for v in (*VARIANTS, *PROGRAMS)
            ],
        )
        runs = found["hotspare"]
        steps = sorted({step for run in runs for step in run["steps"]})
        table(["hotspare step", "seconds"], [[step, f"{median([run['steps'].get(step) for run in runs]):.2f}"] for step in steps])
        commands = sorted({key for run in runs for key in run["commands"]})
        table(
            ["remote command (step: host: kind)", "seconds"],
            [[key[:90], f"{median([run['commands'].get(key, 0.0) for run in runs]):.2f}"] for key in commands],
        )
    print(f"\nload average at the end: {os.getloadavg()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--mb", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--slot", type=int, default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="hotspare-bench."))
    isolate_environment(home)
    started = time.monotonic()
    results: dict = {"meta": run_meta(), "files": args.files, "scenarios": {}}
    bench_args = argparse.Namespace(size_mb=args.mb, files=args.files, reps=args.reps)
    with lab_and_prefect(home, args.slot, args.keep, started) as (lab, env):
        bench = Bench(lab, env, bench_args)
        bench.rng = random.Random(20261206)
        try:
            bench.setup()
            bench.file_names = write_random_files(bench.bench_dir, args.files, bench.file_size)
            os.sync()
            print(f"{args.files} files written; first copies", flush=True)
            for variant in VARIANTS:
                bench.variant(variant)
            for scenario in ("nothing changed", "1 % changed"):
                results["scenarios"][scenario] = bench.scenario(scenario, args.reps)
        finally:
            bench.cleanup()
    results["meta"]["total_seconds"] = round(time.monotonic() - started, 1)
    results["meta"]["load"] = os.getloadavg()
    report(results)
    write_results(results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
