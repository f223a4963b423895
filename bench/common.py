"""What the benchmarks in bench/ share: an isolated environment, their own lab, recording the
flows' SSH traffic, and writing the results. Nothing here is imported from tests/ and nothing in
hotspare changes: the benchmarks measure the product as it is.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hotspare.lab.remote import host_ssh_argv as ssh_argv  # noqa: F401 (one home for tests and benchmarks)
from hotspare.lab.slots import free_slot  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
# Lab slots a benchmark leaves alone: 0 the demo, 1 the test session, 8 bench/rebuild_bench.py's default.
AVOID_SLOTS = (0, 1, 8)
FILES_PER_FOLDER = 100


# ---------------------------------------------------------------------------------------
# Environment and lab


def isolate_environment(home: Path, *, replace: bool = True, test_server_settings: bool = True) -> None:
    """Point hotspare (HOTSPARE_HOME) and Prefect (PREFECT_HOME) at ``home``, analytics off.

    A benchmark must not read or write a developer's inventory or Prefect database.
    ``replace=False`` keeps Prefect variables the caller already set (bench/rebuild_bench.py lets
    them through); ``test_server_settings`` adds the test suite's server-side settings
    (tests/conftest.py) so that task runs are recorded as in the tests.
    """
    os.environ["HOTSPARE_HOME"] = str(home)
    put = os.environ.__setitem__ if replace else os.environ.setdefault
    put("PREFECT_HOME", str(home / "prefect"))
    put("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    put("DO_NOT_TRACK", "1")
    if test_server_settings:
        os.environ.setdefault("PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE", "50")
        os.environ.setdefault("PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE", "50")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def start_lab(directory: Path, slot: int | None, avoid: tuple[int, ...] = AVOID_SLOTS):
    """The benchmark's own lab, as ``(lab, env)``: the slot asked for, or a free one outside
    ``avoid`` (another session may take a free slot between the check and our start: then try
    the next one, at most three times)."""
    from hotspare.lab import Lab
    from hotspare.lab.errors import LabError

    tried: list[int] = []
    while True:
        candidate = slot if slot is not None else free_slot((*avoid, *tried))
        lab = Lab(directory, slot=candidate)
        try:
            return lab, lab.up()
        except LabError as error:
            if slot is not None or "is used by" not in str(error) or len(tried) >= 3:
                raise
            tried.append(candidate)
            print(f"slot {candidate} was taken meanwhile ({error}); trying another", flush=True)


@contextmanager
def own_lab(prefix: str, slot: int | None, keep: bool) -> Iterator[tuple]:
    """``(lab, env)`` of a lab of the benchmark's own (no Prefect) in a fresh isolated home; at the
    end the lab is taken down and the home removed (unless ``keep``), whatever happened."""
    import tempfile

    started = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix=prefix))
    isolate_environment(home)
    with _lab_in(home, slot, keep, started) as lab_and_env:
        yield lab_and_env


@contextmanager
def lab_and_prefect(home: Path, slot: int | None, keep: bool, started: float) -> Iterator[tuple]:
    """``(lab, env)`` of a lab in ``home/lab`` with a Prefect test server running; at the end the
    lab is torn down and ``home`` removed (unless ``keep``), whatever happened.

    ``started`` is the benchmark's ``time.monotonic()`` start, for the "lab up" line."""
    with _lab_in(home, slot, keep, started) as lab_and_env:
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=180):
            yield lab_and_env


@dataclass(frozen=True)
class BenchLab:
    """What a lab benchmark works with: the lab, its environment (``lab.env()``), the isolated
    home everything writes to, and when the benchmark started (``time.monotonic()``)."""

    lab: Any
    env: dict
    home: Path
    started: float


@contextmanager
def bench_lab(prefix: str, slot: int | None, keep: bool, *, load_fleet: bool = True) -> Iterator[BenchLab]:
    """The start-up every lab benchmark shares, in one place: a fresh isolated home (``prefix``
    names its folder), the lab up on ``slot`` or a free one with a Prefect test server, and
    (``load_fleet``) the lab's blocks saved and its fleet loaded. At the end the lab is down and
    the home gone (unless ``keep``), whatever happened."""
    import tempfile

    started = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix=prefix))
    isolate_environment(home)
    with lab_and_prefect(home, slot, keep, started) as (lab, env):
        if load_fleet:
            load_lab_fleet(lab, env)
        yield BenchLab(lab, env, home, started)


def load_lab_fleet(lab, env: dict) -> None:
    """Save the lab's credentials as Prefect blocks and load its fleet, as an operator would."""
    from hotspare.cli import main as cli

    lab.register_blocks()
    if cli(["fleet", "load", env["fleet_file"]]) != 0:
        raise SystemExit("loading the lab's fleet failed (the message above says why)")


@contextmanager
def _lab_in(home: Path, slot: int | None, keep: bool, started: float) -> Iterator[tuple]:
    """The lab of ``lab_and_prefect`` and ``own_lab``: up in ``home/lab``, down (and ``home`` gone) after."""
    lab = None
    try:
        lab, env = start_lab(home / "lab", slot)
        print(f"lab up in slot {lab.slot} ({home / 'lab'}) in {time.monotonic() - started:.1f} s", flush=True)
        yield lab, env
    finally:
        if lab is not None:
            lab.down()
        if not keep:
            shutil.rmtree(home, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# Test data on a lab host (written straight into its root on this machine)


def write_random_files(folder: Path, count: int, size: int) -> list[Path]:
    """``count`` files of ``size`` random bytes below ``folder``, ``FILES_PER_FOLDER`` per
    sub-folder (incompressible, so that rsync and restic move every byte). The caller syncs."""
    paths = []
    for index in range(count):
        sub = folder / f"d{index // FILES_PER_FOLDER:04d}"
        if index % FILES_PER_FOLDER == 0:
            sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"f{index:06d}.bin"
        path.write_bytes(os.urandom(size))
        paths.append(path)
    return paths


def rewrite_random_files(paths: list[Path], count: int, size: int, rng) -> int:
    """Give ``count`` of ``paths`` (chosen by ``rng``) new random content, then sync; the count."""
    for path in rng.sample(paths, count):
        path.write_bytes(os.urandom(size))
    os.sync()
    return count


# ---------------------------------------------------------------------------------------
# Baseline: restic as root over SFTP (the design before the append-only storage accounts)


@contextmanager
def root_restic(connection, env: dict, storage, repository_path: str, folder: str) -> Iterator[list[str]]:
    """``restic`` argv (without subcommand) that reaches ``repository_path`` on ``storage`` (a
    fleet server) from ``connection``'s host as root over SFTP, the way backups ran before the
    append-only accounts: that host gets the lab's root key and the pinned host key in ``folder``
    (below /run/hotspare), removed again when the block ends."""
    from hotspare.adapters.ssh import command_line
    from hotspare.planning import shell_programs as shell

    key, known = f"{folder}/key", f"{folder}/known_hosts"
    host = storage.address if storage.ssh_port == 22 else f"[{storage.address}]:{storage.ssh_port}"
    try:
        connection.run(shell.write_secret_file(key), stdin=Path(env["ssh"]["key"]).read_bytes())
        connection.run(shell.write_secret_file(known), stdin=f"{host} {storage.host_key}\n".encode())
        sftp = command_line(
            [
                "ssh",
                "-F",
                "/dev/null",
                "-i",
                key,
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                f"UserKnownHostsFile={known}",
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-p",
                str(storage.ssh_port),
                f"root@{storage.address}",
                "-s",
                "sftp",
            ]
        )
        yield ["restic", "-r", f"sftp:root@{storage.address}:{repository_path}", "-o", f"sftp.command={sftp}"]
    finally:
        connection.run(shell.remove_tree(folder, shell.RUN_DIR), check=False)


# ---------------------------------------------------------------------------------------
# Recording what the flows do over SSH (wraps the adapter's methods in this process only)


def command_label(argv, *, verify_label: str = "rsync verify (--dry-run --checksum)", program_only: tuple[str, ...] = ()) -> str:
    """A short name for a remote command, to group the time spent per kind of command: rsync
    kinds by their flags, the app's ctl by action, ``sh -c`` by its script's start, else the
    program and its first argument (only the program for those in ``program_only``); installing
    and removing a transfer key as such."""
    from hotspare.planning import file_digests, preflight_facts, transfer_keys

    words = [str(word) for word in argv]
    if words[:1] == ["env"]:  # env NAME=VALUE … before the program (preflight facts, key installs)
        words = words[1:]
        while words and "=" in words[0] and not words[0].startswith("-"):
            words = words[1:]
    if words[:4] == ["python3", "-IS", "-c", file_digests.PROGRAM]:
        return "file digests (sha256 of named files)"
    if len(words) > 2 and words[2] in (preflight_facts.PRODUCTION_SCRIPT, preflight_facts.MIRROR_SCRIPT):
        return "preflight facts (production)" if words[2] == preflight_facts.PRODUCTION_SCRIPT else "preflight facts (mirror)"
    if words[:3] == ["sh", "-c", transfer_keys.KEYS_SCRIPT] and len(words) > 4:
        return f"transfer key {words[4]}"
    if "rsync" in words:
        rsync = words[words.index("rsync") :]
        if "--dry-run" in rsync:
            return verify_label
        if "--files-from=-" in rsync:
            return "rsync repair"
        if rsync[-1] == "/" and "-e" not in rsync:
            return "rsync activate (local)"
        return "rsync copy"
    if words[0].endswith("/ctl") and len(words) > 1:
        return f"app ctl {words[1]}"
    if words[0] == "sh" and len(words) > 2:
        return "sh: " + words[2][:40]
    if words[0] in program_only:
        return words[0]
    return " ".join(words[:2])[:60]


class SshRecorder:
    """Every SSH connect and remote command of the flows, with wall-clock start and end.

    ``label`` names a command (see ``command_label``). With ``mark_failures`` a failed connect
    or command and a non-zero exit show in its label; remote commands that exited non-zero are
    kept in ``nonzero`` either way."""

    def __init__(self, label: Callable[[list], str] = command_label, mark_failures: bool = True) -> None:
        self.label, self.mark_failures = label, mark_failures
        self.events: list[dict] = []
        self.nonzero: list[dict] = []  # remote commands that exited non-zero (with check=False)
        self._lock = threading.Lock()

    def install(self) -> None:
        from hotspare.adapters.ssh import SshConnection

        recorder, connect, run = self, SshConnection.connect, SshConnection.run

        def timed_connect(connection, *a, **k):
            start, failed = time.time(), True
            try:
                result = connect(connection, *a, **k)
                failed = False
                return result
            finally:
                recorder._add(
                    "connect", connection.endpoint.name, "ssh connect" + recorder._outcome(" (failed)" if failed else ""), start
                )

        def timed_run(connection, argv, *a, **k):
            start, outcome = time.time(), " (failed)"
            try:
                result = run(connection, argv, *a, **k)
                outcome = f" (exit {result.exit_status})" if result.exit_status else ""
                if result.exit_status:
                    recorder.nonzero.append(
                        {
                            "host": connection.endpoint.name,
                            "argv": [str(w) for w in argv][:12],
                            "exit": result.exit_status,
                            "stderr": result.stderr_tail[-500:],
                            "at": start,
                        }
                    )
                return result
            finally:
                recorder._add("run", connection.endpoint.name, recorder.label(argv) + recorder._outcome(outcome), start)

        SshConnection.connect, SshConnection.run = timed_connect, timed_run

    def _outcome(self, text: str) -> str:
        return text if self.mark_failures else ""

    def _add(self, kind: str, host: str, label: str, start: float) -> None:
        with self._lock:
            self.events.append({"kind": kind, "host": host, "label": label, "start": start, "end": time.time()})

    def between(self, start: float, end: float, slack: float = 0.0) -> list[dict]:
        """The events that started and ended within [start, end], widened by ``slack`` seconds
        (step times in the inventory and the events' clock readings differ by a few ms)."""
        with self._lock:
            return within(self.events, start, end, slack)


def within(events: list[dict], start: float, end: float, slack: float = 0.0) -> list[dict]:
    """The events of ``events`` that lie in [start - slack, end + slack]."""
    return [e for e in events if e["start"] >= start - slack and e["end"] <= end + slack]


def by_label(timed: Iterable[tuple[str, float]]) -> dict:
    """``(label, seconds)`` pairs as ``{label: {"count", "seconds"}}``, most seconds first."""
    grouped: dict[str, list[float]] = {}
    for label, seconds in timed:
        grouped.setdefault(label, []).append(seconds)
    return {
        label: {"count": len(times), "seconds": round(sum(times), 3)}
        for label, times in sorted(grouped.items(), key=lambda item: -sum(item[1]))
    }


# ---------------------------------------------------------------------------------------
# Results


def epoch(moment: datetime | None) -> float | None:
    """Seconds since the epoch of an inventory time (stored naive, in UTC); None stays None."""
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def git(*args: str, strip: bool = True) -> str:
    """The output of ``git args`` in the repository (empty if git fails)."""
    output = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout
    return output.strip() if strip else output


def run_meta() -> dict:
    """When the benchmark ran and on which code: the commit and the files modified since."""
    return {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": git("rev-parse", "HEAD"),
        "modified_files": [line[3:] for line in git("status", "--porcelain", strip=False).splitlines() if "M" in line[:2]],
    }


def table(header, rows) -> None:
    """Print rows under a header, indented by two: the first column left-aligned, the others right."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  " + "  ".join(str(cell).ljust(widths[i]) if i == 0 else str(cell).rjust(widths[i]) for i, cell in enumerate(row))
        )


def write_results(results: dict, path: str | Path) -> Path:
    """Write the results as indented JSON (anything else as its str) and say where."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nresults written to {out} (whole benchmark {results['meta']['total_seconds']} s)")
    return out


def round_arguments(description: str, out: Path, *, rounds: int, what: str):
    """The arguments of a benchmark that alternates modes for ``--rounds``: rounds, the quiet
    machine it waits for, its lab slot, whether to keep its folder, where it writes."""
    import argparse

    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=rounds, help=f"{what} (default {rounds})")
    parser.add_argument("--max-load", type=float, default=1.0, help="wait until the 1-min load average is below this")
    parser.add_argument("--quiet-wait", type=float, default=600, help="wait at most this many seconds for a quiet machine")
    parser.add_argument("--slot", type=int, default=None, help="lab slot (default: a free one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--out", default=str(out))
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be positive")
    return args
