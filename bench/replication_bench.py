"""Benchmark: hotspare replication and verification against bare rsync, same data, same hosts, one run.

    sudo .venv/bin/python bench/replication_bench.py            # 1 GB, 10,000 files (~11 min on 2 shared cores)
    sudo .venv/bin/python bench/replication_bench.py --size-mb 200 --files 2000 --reps 3 --full-reps 2   # ~8 min
    sudo .venv/bin/python bench/replication_bench.py --size-mb 20 --files 200 --reps 2 --full-reps 1     # dry run, ~4 min
    .venv/bin/python bench/replication_bench.py --slot 8 --size-mb 200 --files 2000 --reps 3 --full-reps 2 --profile   # as root, with a profile

Starts its own lab (a free slot, in a temporary folder), a Prefect test server and a temporary
HOTSPARE_HOME, loads the lab's fleet, then fills app1's data on prod-east with random files
(default 10,000 x ~100 KiB = 1 GB, 100 files per folder) and measures three scenarios:

    full copy        no copy folder on the mirror and empty bare targets (removed before each
                     repetition, as for a new or rebuilt mirror; repeated --full-reps times)
    1 % changed      1 % of the files rewritten with new random content (repeated --reps times)
    nothing changed  no change since the last copy (repeated --reps times)

hotspare's mirror PULLS from production through a key made for each transfer (restricted to the
mirror's address, expiring, forced into rsync's daemon chrooted into a view of the service's
declared paths; see
docs/architecture.md "Data flow of a replication"). Each repetition runs, in alternating order
(odd repetitions as listed, even ones reversed; each always starts from the equivalent state):

    bare push        the old design, for reference: `rsync -a --relative PATHS mirror:/srv/bench-push/`
                     run ON prod-east with the lab's unrestricted client key (copied to /run for
                     the run), pinned known_hosts; timed on prod-east
    bare pull        `rsync -a --relative prod:PATHS /srv/bench-pull/` run ON mirror-west with the
                     same unrestricted key; timed on mirror-west
    scoped pull      the same pull through a real transfer key installed with hotspare's
                     `transfer_access` (the private half on stdin, `with_peer_access`): isolates
                     the cost of the restriction; installing and removing the key is timed apart
    hotspare         `replicate_service("app1")` wall time, and its "copy" and "verify" steps
                     from the inventory (`runs.step_timings`)

then hotspare's exact copy argv (`rsync_copy_argv`: -aHAX --numeric-ids --delete
--link-dest=previous copy, into a fresh folder) through a scoped key, without the orchestration,
and the same for verification against the copy hotspare just made: `rsync -anc --delete -i`
pushed from prod-east, pulled bare, pulled scoped, and hotspare's `rsync_verify_argv` scoped;
once per scenario sha256sum of both sides (in parallel) and the standalone `verify` flow.

Every remote command and SSH connection of the flow is recorded (in-process wrapper of the SSH
adapter, no code changed) and attributed to the flow's steps, to show where the time goes.
Targets (against the old design): replicate copy step <= 1.15 x bare push (full and 1 %);
whole replicate flow <= 1.5 x bare push + 0.5 s (every scenario); verify step <= 1.3 x bare push
`rsync -anc`. bench/proportional_bench.py measures failover time against data size and
replicate --all. Prints tables with the overhead of the scoped pull
over the bare pull and of the copy step over the bare push, writes bench/out/replication.json.
A benchmark, not a test: the machine is shared, so numbers are medians and the order is
alternated instead of dropping the page cache (which would disturb everyone else on the machine).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    SshRecorder,
    by_label,
    command_label,
    epoch,
    isolate_environment,
    lab_and_prefect,
    rewrite_random_files,
    run_meta,
    ssh_argv,
    within,
    write_random_files,
    write_results,
)
from bench.replication_report import COPY_TARGET, VERIFY_TARGET, print_report, summarize  # noqa: E402

SERVICE = "app1"
OUT = ROOT / "bench" / "out" / "replication.json"
# Where the bare transfers write on mirror-west (each updated in place, like a plain mirror).
BARE_TARGETS = {"push": "/srv/bench-push", "pull": "/srv/bench-pull", "scoped": "/srv/bench-scoped"}
COPY_ORDER = ("push", "pull", "scoped", "hotspare")
VERIFY_ORDER = ("push", "pull", "scoped", "product_argv")
# Runs argv on a lab host and reports its own start/end (ns) and exit status on stderr.
TIMED = 's=$(date +%s%N); "$@"; rc=$?; e=$(date +%s%N); printf "\\n@@bench %s %s %s\\n" "$s" "$e" "$rc" >&2'


# How the report names remote commands: rsync's verify as replication runs it (-anc over the
# whole tree: a first copy, everything changed), and file operations by their program alone.
REPLICATION_LABEL = partial(
    command_label, verify_label="rsync verify (-anc, whole tree)", program_only=("install", "rm", "test", "mv", "ln", "chmod")
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1000, help="total data in MiB (default 1000: 10,000 x 100 KiB)")
    parser.add_argument("--files", type=int, default=10_000, help="number of files (default 10,000)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of the 1 %% and no-change scenarios (default 3)")
    parser.add_argument(
        "--full-reps", type=int, default=3, help="repetitions of the full copy (default 3; the mirror is emptied before each)"
    )
    parser.add_argument("--slot", type=int, default=None, help="lab slot (default: a free one)")
    parser.add_argument("--profile", action="store_true", help="also run one no-change replication under cProfile")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (lab hosts, inventory)")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    if min(args.reps, args.full_reps, args.files, args.size_mb) < 1:
        parser.error("--reps, --full-reps, --files and --size-mb must be positive")

    home = Path(tempfile.mkdtemp(prefix="hotspare-bench."))
    isolate_environment(home)

    started = time.monotonic()
    with lab_and_prefect(home, args.slot, args.keep, started) as (lab, env):
        bench = Bench(lab, env, args)
        try:
            results = bench.run()
        finally:
            bench.cleanup()
    results["meta"]["total_seconds"] = round(time.monotonic() - started, 1)
    results["meta"]["slot"] = lab.slot
    print_report(results)
    write_results(results, args.out)
    return 0


# ---------------------------------------------------------------------------------------
# The benchmark


class Bench:
    def __init__(self, lab, env: dict, args) -> None:
        self.lab, self.env, self.args = lab, env, args
        service = env["services"][SERVICE]
        self.production, self.mirror = service["production"], service["mirror"]
        self.prod_root = Path(env["hosts"][self.production]["root"])
        self.data_path = service["data_path"]
        self.bench_dir = self.prod_root / self.data_path.lstrip("/") / "bench"
        self.rng = random.Random(20261125)
        # replication's own names for commands; labels without exit statuses
        self.recorder = SshRecorder(REPLICATION_LABEL, mark_failures=False)
        self.retry_log = RetryLog()
        self.fleet = None
        self.push_peer = self.pull_peer = None  # the unrestricted lab key on prod-east / on mirror-west
        self.argv_runs = 0
        self.file_names: list[Path] = []
        self.file_size = args.size_mb * 2**20 // args.files

    # ----- helpers ----------------------------------------------------------------------

    def ssh(self, host: str, argv: list[str], stdin: bytes | None = None, timeout: float = 1800) -> subprocess.CompletedProcess:
        return subprocess.run(
            ssh_argv(self.env, host, argv), input=stdin or b"", capture_output=True, timeout=timeout, check=False
        )

    def timed_on(self, host: str, argv: list[str], ok=(0,), stdin: bytes | None = None) -> dict:
        """Run argv on a lab host through ssh; its own duration there, plus the wall time here."""
        started = time.perf_counter()
        result = self.ssh(host, ["sh", "-c", TIMED, "sh", *argv], stdin)
        outer = time.perf_counter() - started
        stderr = result.stderr.decode(errors="replace")
        marker = [line for line in stderr.splitlines() if line.startswith("@@bench ")]
        if not marker:
            raise RuntimeError(f"on {host}: {shlex.join(argv)[:200]} failed: {stderr.strip()[-500:]}")
        _, start_ns, end_ns, status = marker[-1].split()
        if int(status) not in ok:
            raise RuntimeError(f"on {host}: {shlex.join(argv)[:200]} exited {status}: {stderr.strip()[-500:]}")
        return {
            "seconds": (int(end_ns) - int(start_ns)) / 1e9,
            "with_ssh": outer,
            "stdout": result.stdout.decode(errors="replace"),
        }

    def must(self, host: str, argv: list[str], stdin: bytes | None = None) -> str:
        result = self.ssh(host, argv, stdin)
        if result.returncode != 0:
            raise RuntimeError(
                f"on {host}: {shlex.join(argv)[:200]} exited {result.returncode}: {result.stderr.decode(errors='replace')[-500:]}"
            )
        return result.stdout.decode(errors="replace")

    def scoped(self, purpose: str, build, ok=(0,)) -> dict:
        """``build(peer)``'s argv run on the mirror through a real transfer key, as hotspare runs
        its transfers: ``transfer_access`` installs the key on production, the private half
        reaches the mirror on stdin. The rsync is timed on the mirror; the key's install and
        removal (round trips from here to production) apart, in ``key_seconds``."""
        from hotspare.planning import replication as plan
        from tasks.transfer_access import transfer_access

        started = time.perf_counter()
        with transfer_access(self.fleet, SERVICE, self.production, self.mirror, self.paths, purpose) as (peer, stdin):
            installed = time.perf_counter()
            result = self.timed_on(self.mirror, plan.with_peer_access(peer, build(peer)), ok, stdin)
            ran = time.perf_counter()
        removed = time.perf_counter()
        return {
            **result,
            "key_install": installed - started,
            "key_remove": removed - ran,
            "key_seconds": (installed - started) + (removed - ran),
        }

    # ----- set-up -----------------------------------------------------------------------

    def setup(self) -> None:
        from hotspare import access
        from hotspare.cli import main as cli
        from hotspare.planning import replication as plan

        self.lab.register_blocks()
        if cli(["fleet", "load", self.env["fleet_file"]]) != 0:
            raise RuntimeError("hotspare fleet load failed")
        self.fleet = fleet = access.loaded_fleet()
        self.paths = plan.source_paths(fleet.service(SERVICE).model_dump(mode="json"))
        self.excludes = fleet.service(SERVICE).exclude
        # the bare transfers use hotspare's ssh options (pinned host key) with the lab's
        # unrestricted client key on tmpfs for the duration of the benchmark: prod-east reaches
        # the mirror (push), mirror-west reaches production (pull)
        user = self.env["ssh"]["user"]
        production, mirror = fleet.server(self.production), fleet.server(self.mirror)
        self.push_peer = plan.peer_access(f"bench-{os.getpid()}-push", user, mirror.address, mirror.ssh_port)
        self.pull_peer = plan.peer_access(f"bench-{os.getpid()}-pull", user, production.address, production.ssh_port)
        key = Path(self.env["ssh"]["key"]).read_bytes()
        for host, peer, other in ((self.production, self.push_peer, self.mirror), (self.mirror, self.pull_peer, self.production)):
            known = f"{access.endpoint(fleet, other).known_hosts_line()}\n".encode()
            self.must(host, ["install", "-d", "-m", "0700", peer.directory])
            self.must(host, ["sh", "-c", 'umask 077 && cat > "$1"', "sh", peer.key_path], key)
            self.must(host, ["sh", "-c", 'umask 077 && cat > "$1"', "sh", peer.known_hosts_path], known)
        self.recorder.install()
        self.retry_log.install()

    def cleanup(self) -> None:
        for host, peer in ((self.production, self.push_peer), (self.mirror, self.pull_peer)):
            if peer is not None:
                self.ssh(host, ["rm", "-rf", "--", peer.directory], timeout=60)

    def generate(self) -> float:
        started = time.perf_counter()
        self.file_names += write_random_files(self.bench_dir, self.args.files, self.file_size)
        seconds = time.perf_counter() - started
        os.sync()
        return seconds

    def change_one_percent(self) -> int:
        return rewrite_random_files(self.file_names, max(1, len(self.file_names) // 100), self.file_size, self.rng)

    # ----- copies -------------------------------------------------------------------------

    def push_copy(self) -> dict:
        """The old design: production runs rsync and pushes with an unrestricted key. Then, timed
        apart (``sync_seconds``), the mirror writes what rsync left in its page cache to disk: a
        snapshot copy's commit does that inside the copy step, bare rsync does not."""
        peer = self.push_peer
        argv = ["rsync", "-a", "--relative", "-e", peer.ssh_command(), *self.paths, peer.remote(BARE_TARGETS["push"] + "/")]
        result = self.timed_on(self.production, argv)
        return {**result, "sync_seconds": self.timed_on(self.mirror, ["sync", "-f", BARE_TARGETS["push"]])["seconds"]}

    def pull_copy(self) -> dict:
        """The mirror runs rsync and pulls with the same unrestricted key."""
        peer = self.pull_peer
        return self.timed_on(
            self.mirror,
            ["rsync", "-a", "--relative", "-e", peer.ssh_command(), *peer.remotes(self.paths), BARE_TARGETS["pull"] + "/"],
        )

    def scoped_copy(self) -> dict:
        """The same pull through a transfer key (view + rsync's daemon on production)."""
        return self.scoped(
            "bench-copy",
            lambda peer: [
                "rsync",
                "-a",
                "--relative",
                "-e",
                peer.ssh_command(),
                *peer.sources(self.paths),
                BARE_TARGETS["scoped"] + "/",
            ],
        )

    def product_argv_copy(self, link_copy: str | None) -> dict:
        """hotspare's exact rsync argv through a transfer key into a fresh folder, linked against
        the previous copy: the cost of the copy's design without the orchestration."""
        from hotspare.planning import replication as plan

        self.argv_runs += 1
        tree = f"/srv/bench-argv/run-{self.argv_runs}/tree"
        self.must(self.mirror, ["install", "-d", "-m", "0700", tree])
        link_dest = plan.copy_tree(SERVICE, link_copy) if link_copy else None
        result = self.scoped(
            "bench-argv", lambda peer: plan.rsync_copy_argv(peer, self.paths, tree, link_dest, self.excludes), ok=(0, 24)
        )
        self.must(self.mirror, ["rm", "-rf", "--", f"/srv/bench-argv/run-{self.argv_runs}"])
        return result

    def hotspare_copy(self) -> dict:
        from sqlmodel import select

        from flows.replicate import replicate_service
        from hotspare.inventory import runs
        from hotspare.inventory.db import session
        from hotspare.inventory.models import RunRow

        self.retry_log.install()
        wall_start = time.time()
        started = time.perf_counter()
        result = replicate_service(SERVICE)
        seconds = time.perf_counter() - started
        wall_end = time.time()
        if result["outcome"] != "ok":
            raise RuntimeError(f"replication failed: {result}")
        with session() as db:
            row = db.exec(
                select(RunRow).where(RunRow.kind == "replicate", RunRow.service == SERVICE).order_by(RunRow.id.desc())
            ).first()
            run_start, run_end = epoch(row.started_at), epoch(row.ended_at)
            steps = runs.step_timings(row.id)
            step_rows = _step_rows(db, row.id)
        by_name = {step["step"]: step["seconds"] for step in steps}
        return {
            "seconds": seconds,
            "copy_step": by_name.get("copy"),
            "verify_step": by_name.get("verify"),
            "steps": steps,
            "copy_id": result["copy_id"],
            "transfer": result["transfer"],
            "breakdown": self.breakdown(wall_start, wall_end, run_start, run_end, step_rows),
            "retries": self.retry_log.between(wall_start, wall_end),
        }

    # ----- verification -------------------------------------------------------------------

    def push_verify(self, copy_id: str) -> dict:
        """The old direction: `rsync -anc` run on prod-east against the copy on the mirror."""
        from hotspare.planning import replication as plan

        peer = self.push_peer
        argv = [
            "rsync",
            "-anc",
            "--delete",
            "--itemize-changes",
            "--relative",
            "-e",
            peer.ssh_command(),
            *self.paths,
            peer.remote(plan.copy_tree(SERVICE, copy_id) + "/"),
        ]
        return _with_differences(self.timed_on(self.production, argv, ok=(0, 24)))

    def pull_verify(self, copy_id: str) -> dict:
        from hotspare.planning import replication as plan

        peer = self.pull_peer
        argv = [
            "rsync",
            "-anc",
            "--delete",
            "--itemize-changes",
            "--relative",
            "-e",
            peer.ssh_command(),
            *peer.remotes(self.paths),
            plan.copy_tree(SERVICE, copy_id) + "/",
        ]
        return _with_differences(self.timed_on(self.mirror, argv, ok=(0, 24)))

    def scoped_verify(self, copy_id: str) -> dict:
        from hotspare.planning import replication as plan

        return _with_differences(
            self.scoped(
                "bench-verify",
                lambda peer: [
                    "rsync",
                    "-anc",
                    "--delete",
                    "--itemize-changes",
                    "--relative",
                    "-e",
                    peer.ssh_command(),
                    *peer.sources(self.paths),
                    plan.copy_tree(SERVICE, copy_id) + "/",
                ],
                ok=(0, 24),
            )
        )

    def product_verify(self, copy_id: str) -> dict:
        """hotspare's own verify argv (-aHAX --numeric-ids -c --dry-run ...) through a transfer key."""
        from hotspare.planning import replication as plan

        return self.scoped(
            "bench-verify",
            lambda peer: plan.rsync_verify_argv(peer, self.paths, plan.copy_tree(SERVICE, copy_id), self.excludes),
            ok=(0, 23, 24),
        )

    def sha256_both_sides(self, copy_id: str) -> dict:
        """sha256 manifests of production's data and the copy's data, both hosts at once."""
        from hotspare.planning import replication as plan

        script = 'cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum'
        folders = {self.production: self.data_path, self.mirror: plan.copy_data_path(SERVICE, copy_id, self.data_path)}
        started = time.perf_counter()
        processes = {
            host: subprocess.Popen(
                ssh_argv(self.env, host, ["sh", "-c", TIMED, "sh", "sh", "-c", script, "sh", folder]),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for host, folder in folders.items()
        }
        outputs = {host: process.communicate(timeout=1800) for host, process in processes.items()}
        wall = time.perf_counter() - started
        sides = {}
        for host, (_stdout, stderr) in outputs.items():
            marker = [line for line in stderr.decode().splitlines() if line.startswith("@@bench ")][-1].split()
            sides[host] = (int(marker[2]) - int(marker[1])) / 1e9
        same = outputs[self.production][0] == outputs[self.mirror][0]
        return {"seconds": wall, "per_side": sides, "manifests_equal": same}

    def verify_flow(self) -> float:
        from flows.verify import verify

        self.retry_log.install()
        started = time.perf_counter()
        outcome = verify([SERVICE])
        seconds = time.perf_counter() - started
        if not outcome[SERVICE]["passed"]:
            raise RuntimeError(f"verify flow failed: {outcome}")
        return seconds

    # ----- where the time goes ------------------------------------------------------------

    def breakdown(self, wall_start: float, wall_end: float, run_start: float, run_end: float, step_rows: list) -> dict:
        """Per step: SSH connects, remote commands (by kind), and the rest (in-process)."""
        events = self.recorder.between(wall_start, wall_end)
        steps = []
        for name, start, end in step_rows:
            inside = within(events, start, end, slack=0.01)
            connects = [e for e in inside if e["kind"] == "connect"]
            commands = [e for e in inside if e["kind"] == "run"]
            ssh_seconds = sum(e["end"] - e["start"] for e in inside)
            steps.append(
                {
                    "step": name,
                    "seconds": round(end - start, 3),
                    "ssh_connects": len(connects),
                    "connect_seconds": round(sum(e["end"] - e["start"] for e in connects), 3),
                    "remote_commands": len(commands),
                    "command_seconds": round(sum(e["end"] - e["start"] for e in commands), 3),
                    "other_seconds": round((end - start) - ssh_seconds, 3),
                    "commands": by_label((event["label"], event["end"] - event["start"]) for event in commands),
                }
            )
        rsync_runs = sum(1 for e in events if e["kind"] == "run" and e["label"].startswith("rsync"))
        return {
            "before_run_record": round(run_start - wall_start, 3),  # flow run creation + engine start
            "after_run_record": round(wall_end - run_end, 3),  # summary artifact + flow run exit
            "between_steps": round((run_end - run_start) - sum(s["seconds"] for s in steps), 3),
            "ssh_connects_orchestrator": sum(1 for e in events if e["kind"] == "connect"),
            "ssh_connects_host_to_host": rsync_runs,  # each rsync on the mirror opens one ssh to production
            "remote_commands": sum(1 for e in events if e["kind"] == "run"),
            "steps": steps,
        }

    # ----- scenarios ----------------------------------------------------------------------

    def rep(self, scenario: str, index: int, previous_copy: str | None) -> dict:
        """One repetition: the copies in alternating order, hotspare's argv, then the verifications."""
        forward = index % 2 == 0
        order = list(COPY_ORDER if forward else reversed(COPY_ORDER))
        bare = {"push": self.push_copy, "pull": self.pull_copy, "scoped": self.scoped_copy}
        measured: dict = {"order": order, "copy": {}}
        for what in order:
            if what == "hotspare":
                measured["hotspare"] = self.hotspare_copy()
            else:
                measured["copy"][what] = bare[what]()
            os.sync()
        measured["copy"]["product_argv"] = self.product_argv_copy(previous_copy)
        os.sync()
        copy_id = measured["hotspare"]["copy_id"]
        verifiers = {
            "push": self.push_verify,
            "pull": self.pull_verify,
            "scoped": self.scoped_verify,
            "product_argv": self.product_verify,
        }
        measured["verify"] = {what: verifiers[what](copy_id) for what in (VERIFY_ORDER if forward else reversed(VERIFY_ORDER))}
        for result in [*measured["copy"].values(), *measured["verify"].values()]:
            result.pop("stdout", None)
        copied, verified, hotspare = measured["copy"], measured["verify"], measured["hotspare"]
        print(
            f"  {scenario} #{index + 1} ({' > '.join(order)}): push {copied['push']['seconds']:.2f} s, pull "
            f"{copied['pull']['seconds']:.2f} s, scoped {copied['scoped']['seconds']:.2f} s (+ key {copied['scoped']['key_seconds']:.2f}), "
            f"product argv {copied['product_argv']['seconds']:.2f} s, copy step {hotspare['copy_step']:.2f} s, flow "
            f"{hotspare['seconds']:.2f} s; verify: push {verified['push']['seconds']:.2f}, pull {verified['pull']['seconds']:.2f}, "
            f"scoped {verified['scoped']['seconds']:.2f}, step {hotspare['verify_step']:.2f} s",
            flush=True,
        )
        if hotspare["retries"]:
            print(
                f"    ^ {len(hotspare['retries'])} task retry(ies) in this run (each waits 2 s, then 10 s); see the log line(s) above",
                flush=True,
            )
        return measured

    def empty_mirror(self) -> int:
        """Before a full copy: no copy folders on the mirror (hotspare then links against
        nothing: a full copy, as for a new or rebuilt mirror) and empty bare targets."""
        from hotspare.planning import copy_backends
        from hotspare.planning import replication as plan

        # snapshot copies are read-only subvolumes (and the working subvolume holds nested ones):
        # each goes through the product's own removal script, whatever its back-end
        script = (
            'folder=$1; work=$2; shift 2; for c in "$folder"/* "$work"; do sh -c "$REMOVE" sh "$c" || exit 1; done; '
            'rm -rf -- "$@"'
        )
        self.must(
            self.mirror,
            [
                "env",
                f"REMOVE={copy_backends.REMOVE_SCRIPT}",
                "sh",
                "-c",
                script,
                "sh",
                plan.service_root(SERVICE) + "/copies",
                copy_backends.work_root(SERVICE),
                *BARE_TARGETS.values(),
            ],
        )
        os.sync()
        return 0

    def scenario(self, name: str, reps: int, change, full: bool = False) -> dict:
        from hotspare.inventory import copies

        repetitions = []
        for index in range(reps):
            changed = change() if change else 0
            current = None if full else copies.current_copy(SERVICE)
            measured = self.rep(name, index, current.id if current else None)
            measured["files_changed"] = changed
            repetitions.append(measured)
        last_copy = repetitions[-1]["hotspare"]["copy_id"]
        sha = self.sha256_both_sides(last_copy)
        if not sha["manifests_equal"]:
            raise RuntimeError(f"{name}: the copy's sha256 manifest differs from production's")
        flow = self.verify_flow()
        print(f"  {name}: sha256 of both sides {sha['seconds']:.2f} s, verify flow {flow:.2f} s", flush=True)
        return {"repetitions": repetitions, "sha256_both_sides": sha, "verify_flow_seconds": flow, **summarize(repetitions)}

    def run(self) -> dict:
        from hotspare.planning import transfer_keys

        self.setup()
        generated = self.generate()
        total = self.file_size * self.args.files
        print(
            f"generated {self.args.files} files x {self.file_size} bytes = {total / 1e9:.2f} GB in {generated:.1f} s", flush=True
        )
        results = {
            "meta": {
                **run_meta(),
                "files": self.args.files,
                "file_bytes": self.file_size,
                "total_bytes": total,
                "cpus": os.cpu_count(),
                "load_average_start": os.getloadavg(),
                "rsync": subprocess.run(["rsync", "--version"], capture_output=True, text=True).stdout.splitlines()[0],
                "paths": self.paths,
                "push_ssh_command": self.push_peer.ssh_command(),
                "pull_ssh_command": self.pull_peer.ssh_command(),
                "transfer_view": transfer_keys.VIEW_PATH,
                "bare_targets": BARE_TARGETS,
                "copy_order": COPY_ORDER,
                "verify_order": VERIFY_ORDER,
                "targets": {"copy_step_over_push": COPY_TARGET, "verify_step_over_push": VERIFY_TARGET},
            },
            "scenarios": {},
        }
        results["latency"] = self.latency()
        latency = results["latency"]
        one = latency["one_file_pull_ms"]
        print(
            f"SSH from the orchestrator: connect {latency['connect_ms']} ms, one remote command {latency['command_ms']} ms; "
            f"shell start on the host {latency['shell_with_bashrc_ms']} ms with ~/.bashrc, {latency['shell_without_bashrc_ms']} ms without; "
            f"one small file pulled bare {one['bare']} ms, scoped {one['scoped']} ms",
            flush=True,
        )
        results["scenarios"]["full copy"] = self.scenario("full copy", self.args.full_reps, self.empty_mirror, full=True)
        results["scenarios"]["1 % changed"] = self.scenario("1 % changed", self.args.reps, self.change_one_percent)
        results["scenarios"]["nothing changed"] = self.scenario("nothing changed", self.args.reps, None)
        if self.args.profile:
            results["profile"] = self.profile()
        results["meta"]["load_average_end"] = os.getloadavg()
        return results

    def one_file_pull(self, times: int = 5) -> dict:
        """Per-connection cost of the restriction: one small declared file (/etc/passwd) pulled
        by the mirror, bare and through a transfer key, alternating (median ms)."""
        peer, target = self.pull_peer, "/srv/bench-one-file"
        bare, scoped, installs, removals = [], [], [], []
        for _ in range(times):
            bare.append(
                self.timed_on(self.mirror, ["rsync", "-a", "-e", peer.ssh_command(), peer.remote("/etc/passwd"), target])[
                    "seconds"
                ]
            )
            result = self.scoped(
                "bench-one",
                lambda scoped_peer: [
                    "rsync",
                    "-a",
                    "-e",
                    scoped_peer.ssh_command(),
                    *scoped_peer.sources(["/etc/passwd"]),
                    target,
                ],
            )
            scoped.append(result["seconds"])
            installs.append(result["key_install"])
            removals.append(result["key_remove"])
        self.must(self.mirror, ["rm", "-f", "--", target])
        return {
            name: round(statistics.median(values) * 1000, 1)
            for name, values in (("bare", bare), ("scoped", scoped), ("key_install", installs), ("key_remove", removals))
        }

    def latency(self) -> dict:
        """What one SSH connection and one remote command cost here, and why (shell start-up)."""
        from hotspare import access
        from hotspare.adapters.ssh import SshConnection

        fleet = access.loaded_fleet()
        server = fleet.server(self.production)
        connects, commands = [], []
        for _ in range(5):
            # a fresh connection each time (access.connect may hand out a pooled one)
            connection = SshConnection(access.endpoint(fleet, self.production), access.login(fleet.ssh_block_of(server)))
            started = time.perf_counter()
            with connection as production:
                connects.append(time.perf_counter() - started)
                for _ in range(4):
                    started = time.perf_counter()
                    production.run(["true"])
                    commands.append(time.perf_counter() - started)
        # sshd runs every command through root's login shell; bash sources ~/.bashrc when started by sshd
        probe = (
            'for i in 1 2 3 4 5; do s=$(date +%s%N); env -i SHLVL=0 HOME="$HOME" PATH=/usr/bin:/bin $1 bash -c true; '
            "e=$(date +%s%N); echo $((e - s)); done"
        )

        def shell_ms(extra: str) -> float:
            output = self.must(self.production, ["sh", "-c", probe, "sh", extra])
            return round(statistics.median(int(line) for line in output.split()) / 1e6, 1)

        return {
            "connect_ms": round(statistics.median(connects) * 1000, 1),
            "command_ms": round(statistics.median(commands) * 1000, 1),
            "shell_with_bashrc_ms": shell_ms("SSH_CLIENT=bench"),
            "shell_without_bashrc_ms": shell_ms(""),
            "login_shell": self.must(self.production, ["sh", "-c", "getent passwd root | cut -d: -f7"]).strip(),
            "one_file_pull_ms": self.one_file_pull(),
        }

    def profile(self) -> dict:
        import cProfile
        import pstats

        from flows.replicate import replicate_service

        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        replicate_service(SERVICE)
        profiler.disable()
        seconds = time.perf_counter() - started
        path = Path(self.args.out).with_suffix(".pstats")
        path.parent.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(path)
        stats = pstats.Stats(profiler)
        interesting = (
            "thread.join",
            "paramiko",
            "client.py",
            "flow_engine",
            "task_engine",
            "select",
            "acquire",
            "sqlite",
            "httpx",
            "sleep",
        )
        top = []
        for (filename, line, function), (_, calls, _, cumulative, _) in sorted(stats.stats.items(), key=lambda item: -item[1][3]):
            where = f"{Path(filename).name}:{line}({function})"
            if cumulative > 0.05 and any(word in where for word in interesting):
                top.append({"function": where, "calls": calls, "cumulative_seconds": round(cumulative, 3)})
            if len(top) >= 40:
                break
        return {"seconds": seconds, "pstats": str(path), "top": top}


class RetryLog(logging.Filter):
    """Keeps Prefect's "Task run failed with exception ... - Retry n/m" lines (INFO, which the
    benchmark's WARNING level would drop): a retry waits 2 s, then 10 s, and explains an outlier.
    Everything else on the task-run logger still needs WARNING to pass."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict] = []

    def install(self) -> None:
        """Call before each flow run: Prefect resets its loggers' levels when it (re)configures logging."""
        logger = logging.getLogger("prefect.task_runs")
        logger.setLevel(logging.INFO)
        logger.addFilter(self)  # once: addFilter ignores a filter it already has

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Task run failed with"):
            self.lines.append({"time": record.created, "task": getattr(record, "task_run_name", "?"), "message": message[:600]})
            return True
        return record.levelno >= logging.WARNING

    def between(self, start: float, end: float) -> list[dict]:
        return [line for line in self.lines if start <= line["time"] <= end]


def _step_rows(db, run_id: int) -> list[tuple[str, float, float]]:
    from sqlmodel import select

    from hotspare.inventory.models import StepRow

    rows = db.exec(select(StepRow).where(StepRow.run_id == run_id).order_by(StepRow.id)).all()
    return [(row.name, epoch(row.started_at), epoch(row.ended_at)) for row in rows if row.ended_at]


def _with_differences(result: dict) -> dict:
    """A verification's timings and how many file-level differences it listed (0 expected)."""
    lines = result.pop("stdout", "").splitlines()
    return {**result, "differences": sum(1 for line in lines if line.strip() and not line.startswith(".d..t"))}


if __name__ == "__main__":
    sys.exit(main())
