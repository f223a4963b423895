"""Benchmark: hotspare replication and verification against bare rsync, same data, same hosts, one run.

    sudo .venv/bin/python bench/replication_bench.py            # 1 GB, 10,000 files (~3-4 min)
    sudo .venv/bin/python bench/replication_bench.py --size-mb 50 --files 500 --reps 2 --full-reps 1   # dry run

Starts its own lab (a free slot, in a temporary folder), a Prefect test server and a temporary
HOTSPARE_HOME, loads the lab's fleet, then fills app1's data on prod-east with random files
(default 10,000 x ~100 KiB = 1 GB, 100 files per folder) and measures three scenarios:

    full copy        no copy folder on the mirror (removed before each repetition, as for a new
                     or rebuilt mirror) / bare target folder empty (repeated --full-reps times)
    1 % changed      1 % of the files rewritten with new random content (repeated --reps times)
    nothing changed  no change since the last copy (repeated --reps times)

For each scenario and repetition, in alternating order (odd repetitions bare first, even ones
hotspare first; both always start from the equivalent state):

    bare rsync        `rsync -a --relative PATHS mirror:/srv/bench-bare/`, run ON prod-east and
                      pushing to mirror-west with hotspare's ssh options (pinned known_hosts, the
                      lab client key copied to /run for the run); timed on prod-east
    hotspare          `replicate_service("app1")` wall time, and its "copy" and "verify" steps
                      from the inventory (`runs.step_timings`)
    rsync as hotspare the exact rsync argv of hotspare's copy (-aHAX --numeric-ids --delete
                      --link-dest=previous copy, into a fresh folder), without the orchestration:
                      separates the cost of the copy design from the cost of the orchestration
    bare verify       `rsync -anc --delete -i --relative PATHS mirror:COPY/` against the copy
                      hotspare just made; hotspare's own verify argv bare; and once per scenario
                      sha256sum of both sides (in parallel) and the standalone `verify` flow

Every remote command and SSH connection of the flow is recorded (in-process wrapper of the SSH
adapter, no code changed) and attributed to the flow's steps, to show where the time goes.
Targets: replicate copy step <= 1.15 x bare rsync (full and 1 %); verify step <= 1.3 x bare
`rsync -anc`. Prints tables, writes bench/out/replication.json. A benchmark, not a test: the
machine is shared, so numbers are medians and the order is alternated instead of dropping the
page cache (which would disturb everyone else on the machine).
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

from bench.common import (SshRecorder, by_label, command_label, epoch, isolate_environment, lab_and_prefect,  # noqa: E402
                          rewrite_random_files, run_meta, ssh_argv, table, within, write_random_files, write_results)

SERVICE = "app1"
COPY_TARGET = 1.15
VERIFY_TARGET = 1.3
OUT = ROOT / "bench" / "out" / "replication.json"
# Runs argv on a lab host and reports its own start/end (ns) and exit status on stderr.
TIMED = 's=$(date +%s%N); "$@"; rc=$?; e=$(date +%s%N); printf "\\n@@bench %s %s %s\\n" "$s" "$e" "$rc" >&2'
# How the report names remote commands: rsync's verify as replication runs it (-anc over the
# whole tree), and file operations by their program alone.
REPLICATION_LABEL = partial(command_label, verify_label="rsync verify (-anc, whole tree)",
                            program_only=("install", "rm", "test", "mv", "ln", "chmod"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1000, help="total data in MiB (default 1000: 10,000 x 100 KiB)")
    parser.add_argument("--files", type=int, default=10_000, help="number of files (default 10,000)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of the 1 %% and no-change scenarios (default 3)")
    parser.add_argument("--full-reps", type=int, default=3, help="repetitions of the full copy (default 3; the mirror is emptied before each)")
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
        self.peer = None
        self.flags_runs = 0
        self.file_names: list[Path] = []
        self.file_size = args.size_mb * 2**20 // args.files

    # ----- helpers ----------------------------------------------------------------------

    def ssh(self, host: str, argv: list[str], stdin: bytes | None = None, timeout: float = 1800) -> subprocess.CompletedProcess:
        return subprocess.run(ssh_argv(self.env, host, argv), input=stdin or b"", capture_output=True, timeout=timeout, check=False)

    def timed_on(self, host: str, argv: list[str], ok=(0,)) -> dict:
        """Run argv on a lab host through ssh; its own duration there, plus the wall time here."""
        started = time.perf_counter()
        result = self.ssh(host, ["sh", "-c", TIMED, "sh", *argv])
        outer = time.perf_counter() - started
        stderr = result.stderr.decode(errors="replace")
        marker = [line for line in stderr.splitlines() if line.startswith("@@bench ")]
        if not marker:
            raise RuntimeError(f"on {host}: {shlex.join(argv)[:200]} failed: {stderr.strip()[-500:]}")
        _, start_ns, end_ns, status = marker[-1].split()
        if int(status) not in ok:
            raise RuntimeError(f"on {host}: {shlex.join(argv)[:200]} exited {status}: {stderr.strip()[-500:]}")
        return {"seconds": (int(end_ns) - int(start_ns)) / 1e9, "with_ssh": outer, "stdout": result.stdout.decode(errors="replace")}

    def must(self, host: str, argv: list[str], stdin: bytes | None = None) -> str:
        result = self.ssh(host, argv, stdin)
        if result.returncode != 0:
            raise RuntimeError(f"on {host}: {shlex.join(argv)[:200]} exited {result.returncode}: {result.stderr.decode(errors='replace')[-500:]}")
        return result.stdout.decode(errors="replace")

    # ----- set-up -----------------------------------------------------------------------

    def setup(self) -> None:
        from hotspare import access
        from hotspare.cli import main as cli
        from hotspare.planning import replication as plan

        self.lab.register_blocks()
        if cli(["fleet", "load", self.env["fleet_file"]]) != 0:
            raise RuntimeError("hotspare fleet load failed")
        fleet = access.loaded_fleet()
        self.paths = plan.source_paths(fleet.service(SERVICE).model_dump(mode="json"))
        mirror = fleet.server(self.mirror)
        # production reaches the mirror like hotspare's own rsync does: same ssh options, pinned
        # host key, the lab's client key on tmpfs for the duration of the benchmark
        self.peer = plan.peer_access(f"bench-{os.getpid()}", self.env["ssh"]["user"], mirror.address, mirror.ssh_port)
        key = Path(self.env["ssh"]["key"]).read_bytes()
        known = f"{access.endpoint(fleet, self.mirror).known_hosts_line()}\n".encode()
        self.must(self.production, ["install", "-d", "-m", "0700", self.peer.directory])
        self.must(self.production, ["sh", "-c", 'umask 077 && cat > "$1"', "sh", self.peer.key_path], key)
        self.must(self.production, ["sh", "-c", 'umask 077 && cat > "$1"', "sh", self.peer.known_hosts_path], known)
        self.recorder.install()
        self.retry_log.install()

    def cleanup(self) -> None:
        if self.peer is not None:
            self.ssh(self.production, ["rm", "-rf", "--", self.peer.directory], timeout=60)

    def generate(self) -> float:
        started = time.perf_counter()
        self.file_names += write_random_files(self.bench_dir, self.args.files, self.file_size)
        seconds = time.perf_counter() - started
        os.sync()
        return seconds

    def change_one_percent(self) -> int:
        return rewrite_random_files(self.file_names, max(1, len(self.file_names) // 100), self.file_size, self.rng)

    # ----- measurements -------------------------------------------------------------------

    def bare_copy(self) -> dict:
        argv = ["rsync", "-a", "--relative", "-e", self.peer.ssh_command(), *self.paths, self.peer.remote("/srv/bench-bare/")]
        return self.timed_on(self.production, argv)

    def hotspare_flags_copy(self, link_copy: str | None) -> dict:
        """hotspare's exact rsync argv into a fresh folder, linked against the previous copy."""
        from hotspare.planning import replication as plan

        self.flags_runs += 1
        tree = f"/srv/bench-flags/run-{self.flags_runs}/tree"
        self.must(self.mirror, ["install", "-d", "-m", "0700", tree])
        link_dest = plan.copy_tree(SERVICE, link_copy) if link_copy else None
        result = self.timed_on(self.production, plan.rsync_copy_argv(self.peer, self.paths, tree, link_dest), ok=(0, 24))
        self.must(self.mirror, ["rm", "-rf", "--", f"/srv/bench-flags/run-{self.flags_runs}"])
        return result

    def hotspare_copy(self) -> dict:
        from flows.replicate import replicate_service
        from hotspare.inventory import runs
        from hotspare.inventory.db import session
        from hotspare.inventory.models import RunRow
        from sqlmodel import select

        self.retry_log.install()
        wall_start = time.time()
        started = time.perf_counter()
        result = replicate_service(SERVICE)
        seconds = time.perf_counter() - started
        wall_end = time.time()
        if result["outcome"] != "ok":
            raise RuntimeError(f"replication failed: {result}")
        with session() as db:
            row = db.exec(select(RunRow).where(RunRow.kind == "replicate", RunRow.service == SERVICE).order_by(RunRow.id.desc())).first()
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

    def bare_verify(self, copy_id: str) -> dict:
        from hotspare.planning import replication as plan

        argv = ["rsync", "-anc", "--delete", "--itemize-changes", "--relative", "-e", self.peer.ssh_command(),
                *self.paths, self.peer.remote(plan.copy_tree(SERVICE, copy_id) + "/")]
        result = self.timed_on(self.production, argv, ok=(0, 24))
        differences = [line for line in result["stdout"].splitlines() if line.strip() and not line.startswith(".d..t")]
        return {"seconds": result["seconds"], "with_ssh": result["with_ssh"], "differences": len(differences)}

    def hotspare_verify_argv(self, copy_id: str) -> dict:
        from hotspare.planning import replication as plan

        result = self.timed_on(self.production, plan.rsync_verify_argv(self.peer, self.paths, plan.copy_tree(SERVICE, copy_id)), ok=(0, 23, 24))
        return {"seconds": result["seconds"], "with_ssh": result["with_ssh"]}

    def sha256_both_sides(self, copy_id: str) -> dict:
        """sha256 manifests of production's data and the copy's data, both hosts at once."""
        from hotspare.planning import replication as plan

        script = 'cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum'
        folders = {self.production: self.data_path, self.mirror: plan.copy_data_path(SERVICE, copy_id, self.data_path)}
        started = time.perf_counter()
        processes = {host: subprocess.Popen(ssh_argv(self.env, host, ["sh", "-c", TIMED, "sh", "sh", "-c", script, "sh", folder]),
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                     for host, folder in folders.items()}
        outputs = {host: process.communicate(timeout=1800) for host, process in processes.items()}
        wall = time.perf_counter() - started
        sides = {}
        for host, (stdout, stderr) in outputs.items():
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
            steps.append({
                "step": name,
                "seconds": round(end - start, 3),
                "ssh_connects": len(connects),
                "connect_seconds": round(sum(e["end"] - e["start"] for e in connects), 3),
                "remote_commands": len(commands),
                "command_seconds": round(sum(e["end"] - e["start"] for e in commands), 3),
                "other_seconds": round((end - start) - ssh_seconds, 3),
                "commands": by_label((event["label"], event["end"] - event["start"]) for event in commands),
            })
        rsync_runs = sum(1 for e in events if e["kind"] == "run" and e["label"].startswith("rsync"))
        return {
            "before_run_record": round(run_start - wall_start, 3),  # flow run creation + engine start
            "after_run_record": round(wall_end - run_end, 3),  # summary artifact + flow run exit
            "between_steps": round((run_end - run_start) - sum(s["seconds"] for s in steps), 3),
            "ssh_connects_orchestrator": sum(1 for e in events if e["kind"] == "connect"),
            "ssh_connects_host_to_host": rsync_runs,  # each rsync opens one ssh prod -> mirror
            "remote_commands": sum(1 for e in events if e["kind"] == "run"),
            "steps": steps,
        }

    # ----- scenarios ----------------------------------------------------------------------

    def rep(self, scenario: str, index: int, previous_copy: str | None) -> dict:
        """One repetition: bare and hotspare in alternating order, then the comparisons."""
        hotspare_first = index % 2 == 1
        order = ["hotspare", "bare", "flags"] if hotspare_first else ["bare", "hotspare", "flags"]
        measured: dict = {"order": order}
        for what in order:
            if what == "bare":
                measured["bare"] = self.bare_copy()
            elif what == "hotspare":
                measured["hotspare"] = self.hotspare_copy()
            else:
                measured["flags"] = self.hotspare_flags_copy(previous_copy)
            os.sync()
        copy_id = measured["hotspare"]["copy_id"]
        measured["bare_verify"] = self.bare_verify(copy_id)
        measured["hotspare_verify_argv"] = self.hotspare_verify_argv(copy_id)
        hotspare = measured["hotspare"]
        print(f"  {scenario} #{index + 1} ({' then '.join(order[:2])}): bare {measured['bare']['seconds']:.2f} s, "
              f"rsync as hotspare {measured['flags']['seconds']:.2f} s, copy step {hotspare['copy_step']:.2f} s, "
              f"flow {hotspare['seconds']:.2f} s; verify step {hotspare['verify_step']:.2f} s vs bare -anc "
              f"{measured['bare_verify']['seconds']:.2f} s", flush=True)
        if hotspare["retries"]:
            print(f"    ^ {len(hotspare['retries'])} task retry(ies) in this run (each waits 2 s, then 10 s); see the log line(s) above", flush=True)
        return measured

    def empty_mirror(self) -> int:
        """Before a full copy: no copy folders on the mirror (hotspare then links against
        nothing: a full copy, as for a new or rebuilt mirror) and an empty bare target."""
        from hotspare.planning import replication as plan

        self.must(self.mirror, ["sh", "-c", 'rm -rf -- "$1"/* /srv/bench-bare', "sh", plan.service_root(SERVICE) + "/copies"])
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
        self.setup()
        generated = self.generate()
        total = self.file_size * self.args.files
        print(f"generated {self.args.files} files x {self.file_size} bytes = {total / 1e9:.2f} GB in {generated:.1f} s", flush=True)
        results = {
            "meta": {
                **run_meta(),
                "files": self.args.files, "file_bytes": self.file_size, "total_bytes": total,
                "cpus": os.cpu_count(), "load_average_start": os.getloadavg(),
                "rsync": subprocess.run(["rsync", "--version"], capture_output=True, text=True).stdout.splitlines()[0],
                "paths": self.paths, "bare_ssh_command": self.peer.ssh_command(),
                "targets": {"copy_step_over_bare": COPY_TARGET, "verify_step_over_bare": VERIFY_TARGET},
            },
            "scenarios": {},
        }
        results["latency"] = self.latency()
        latency = results["latency"]
        print(f"SSH from the orchestrator: connect {latency['connect_ms']} ms, one remote command {latency['command_ms']} ms; "
              f"shell start on the host {latency['shell_with_bashrc_ms']} ms with ~/.bashrc, {latency['shell_without_bashrc_ms']} ms without", flush=True)
        results["scenarios"]["full copy"] = self.scenario("full copy", self.args.full_reps, self.empty_mirror, full=True)
        results["scenarios"]["1 % changed"] = self.scenario("1 % changed", self.args.reps, self.change_one_percent)
        results["scenarios"]["nothing changed"] = self.scenario("nothing changed", self.args.reps, None)
        if self.args.profile:
            results["profile"] = self.profile()
        results["meta"]["load_average_end"] = os.getloadavg()
        return results

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
        probe = ('for i in 1 2 3 4 5; do s=$(date +%s%N); env -i SHLVL=0 HOME="$HOME" PATH=/usr/bin:/bin $1 bash -c true; '
                 'e=$(date +%s%N); echo $((e - s)); done')
        def shell_ms(extra: str) -> float:
            output = self.must(self.production, ["sh", "-c", probe, "sh", extra])
            return round(statistics.median(int(line) for line in output.split()) / 1e6, 1)

        return {
            "connect_ms": round(statistics.median(connects) * 1000, 1),
            "command_ms": round(statistics.median(commands) * 1000, 1),
            "shell_with_bashrc_ms": shell_ms("SSH_CLIENT=bench"),
            "shell_without_bashrc_ms": shell_ms(""),
            "login_shell": self.must(self.production, ["sh", "-c", "getent passwd root | cut -d: -f7"]).strip(),
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
        interesting = ("thread.join", "paramiko", "client.py", "flow_engine", "task_engine", "select", "acquire", "sqlite", "httpx", "sleep")
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


# ---------------------------------------------------------------------------------------
# Summary and report


def median(values) -> float | None:
    values = [value for value in values if value is not None]
    return round(statistics.median(values), 3) if values else None


def summarize(repetitions: list[dict]) -> dict:
    summary = {
        "bare_seconds": median(r["bare"]["seconds"] for r in repetitions),
        "bare_with_ssh_seconds": median(r["bare"]["with_ssh"] for r in repetitions),
        "rsync_as_hotspare_seconds": median(r["flags"]["seconds"] for r in repetitions),
        "copy_step_seconds": median(r["hotspare"]["copy_step"] for r in repetitions),
        "flow_seconds": median(r["hotspare"]["seconds"] for r in repetitions),
        "verify_step_seconds": median(r["hotspare"]["verify_step"] for r in repetitions),
        "bare_verify_seconds": median(r["bare_verify"]["seconds"] for r in repetitions),
        "hotspare_verify_argv_seconds": median(r["hotspare_verify_argv"]["seconds"] for r in repetitions),
    }
    step_names = [step["step"] for step in repetitions[0]["hotspare"]["steps"]]
    summary["step_seconds"] = {name: median(next((s["seconds"] for s in r["hotspare"]["steps"] if s["step"] == name), None)
                                            for r in repetitions) for name in step_names}
    summary["copy_over_bare"] = round(summary["copy_step_seconds"] / summary["bare_seconds"], 2)
    summary["verify_over_bare"] = round(summary["verify_step_seconds"] / summary["bare_verify_seconds"], 2)
    return summary


def print_report(results: dict) -> None:
    scenarios = results["scenarios"]
    meta = results["meta"]
    print(f"\nReplication of {meta['files']} files x {meta['file_bytes']} bytes ({meta['total_bytes'] / 1e9:.2f} GB), "
          f"prod-east -> mirror-west; medians (full copy: {len(scenarios['full copy']['repetitions'])} runs, others: {len(scenarios['1 % changed']['repetitions'])} runs)")
    header = ("scenario", "bare rsync", "rsync as hotspare", "copy step", "whole flow", "copy/bare", "target", "")
    rows = []
    for name, s in scenarios.items():
        has_target = name != "nothing changed"
        met = s["copy_over_bare"] <= COPY_TARGET
        rows.append((name, f"{s['bare_seconds']:.2f}", f"{s['rsync_as_hotspare_seconds']:.2f}", f"{s['copy_step_seconds']:.2f}",
                     f"{s['flow_seconds']:.2f}", f"{s['copy_over_bare']:.2f}x",
                     f"<= {COPY_TARGET}x" if has_target else "-", ("met" if met else "MISSED") if has_target else ""))
    table(header, rows)

    print("\nVerification (content) on the same data")
    header = ("scenario", "bare rsync -anc", "hotspare argv bare", "verify step", "verify/bare", "target", "", "sha256 both", "verify flow")
    rows = []
    for name, s in scenarios.items():
        met = s["verify_over_bare"] <= VERIFY_TARGET
        rows.append((name, f"{s['bare_verify_seconds']:.2f}", f"{s['hotspare_verify_argv_seconds']:.2f}", f"{s['verify_step_seconds']:.2f}",
                     f"{s['verify_over_bare']:.2f}x", f"<= {VERIFY_TARGET}x", "met" if met else "MISSED",
                     f"{s['sha256_both_sides']['seconds']:.2f}", f"{s['verify_flow_seconds']:.2f}"))
    table(header, rows)

    print("\nSteps of the replicate flow (median seconds)")
    names = list(next(iter(scenarios.values()))["step_seconds"])
    table(("scenario", *names, "whole flow"),
           [(name, *[f"{s['step_seconds'].get(step) or 0:.2f}" for step in names], f"{s['flow_seconds']:.2f}") for name, s in scenarios.items()])

    latency = results["latency"]
    print(f"\nSSH costs here: connect {latency['connect_ms']} ms, one remote command (`true`) {latency['command_ms']} ms; "
          f"root's shell ({latency['login_shell']}) starts in {latency['shell_with_bashrc_ms']} ms when sshd runs it "
          f"(~/.bashrc sourced), {latency['shell_without_bashrc_ms']} ms without")
    print("\nWhere the time goes (last run of each scenario): per step, SSH connects / remote commands / rest in-process")
    for name, s in scenarios.items():
        breakdown = s["repetitions"][-1]["hotspare"]["breakdown"]
        print(f"  {name}: {breakdown['ssh_connects_orchestrator']} new SSH connection(s) from the orchestrator, "
              f"{breakdown['ssh_connects_host_to_host']} prod->mirror (one per rsync), {breakdown['remote_commands']} remote commands; "
              f"flow start {breakdown['before_run_record']:.2f} s, flow end {breakdown['after_run_record']:.2f} s, "
              f"between steps {breakdown['between_steps']:.2f} s")
        for step in breakdown["steps"]:
            top = ", ".join(f"{label} x{c['count']} {c['seconds']:.2f}" for label, c in list(step["commands"].items())[:4])
            print(f"    {step['step']:<15} {step['seconds']:6.2f} s = connects {step['ssh_connects']} ({step['connect_seconds']:.2f}) "
                  f"+ commands {step['remote_commands']} ({step['command_seconds']:.2f}) + other {step['other_seconds']:.2f}   [{top}]")
    retries = [(name, index + 1, line) for name, s in scenarios.items() for index, r in enumerate(s["repetitions"])
               for line in r["hotspare"]["retries"]]
    if retries:
        print("\nTask retries (a transient failure costs the retry delay, 2 s then 10 s, plus the re-run):")
        for name, number, line in retries:
            print(f"    {name} #{number}: {line['message'][:300]}")
    if "profile" in results:
        print(f"\nProfile of one no-change replication ({results['profile']['seconds']:.2f} s, {results['profile']['pstats']}):")
        for entry in results["profile"]["top"][:25]:
            print(f"    {entry['cumulative_seconds']:7.3f} s  {entry['calls']:6d} calls  {entry['function']}")


if __name__ == "__main__":
    sys.exit(main())
