"""What the host lock costs an account merge, against a bare command in the same run.

    .venv/bin/python bench/host_lock_bench.py [--slot N] [--reps 30] [--keep]

Starts its own lab (no Prefect needed) and, on mirror-west through one ``SshConnection`` (as a
run shares one per server), times, interleaved, ``--reps`` times each:

1. bare: one command (``true``), the round trip every step pays;
2. lock: ``tasks/host_lock.host_lock`` taken and released around nothing (its own channel,
   ``flock``, the holder's note, the ready line, stdin closed and the command's end awaited);
3. merge unlocked: the old merge's remote work (four files read over SFTP, one written, a
   fixed-name rename), on a scratch copy of the account files;
4. merge locked: the same inside the lock, with the stale-file sweep and the checked rename.

Then two threads doing (4) at once, ``--reps`` rounds: the wall time of a round (they take turns).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import own_lab, run_meta, table, write_results

HOST = "mirror-west"
SCRATCH = "/etc/hotspare-bench"
FILES = tuple(f"{SCRATCH}/{name}" for name in ("passwd", "group", "shadow", "gshadow"))


def connection_to(env: dict):
    from hotspare.adapters.ssh import Endpoint, Login, SshConnection
    from hotspare.fleet.load import load_fleet

    server = load_fleet(env["fleet_file"]).server(HOST)
    secrets = json.loads(Path(env["secrets_file"]).read_text())
    return SshConnection(
        Endpoint(server.name, server.address, server.ssh_port, server.host_key),
        Login(env["ssh"]["user"], secrets["ssh"]["private_key"]),
    )


def merge_unlocked(connection) -> None:
    """The merge's remote work before the lock: SFTP reads, one new file through stdin, a fixed-name rename."""
    with connection.open_sftp() as sftp:
        texts = {path: sftp.open(path, "r").read() for path in FILES}
    connection.run(["sh", "-c", 'umask 077 && cat > "$1"', "sh", FILES[2] + ".hotspare-new"], stdin=texts[FILES[2]])
    connection.run(["sh", "-c", 'mv -f -- "$1.hotspare-new" "$1"', "sh", FILES[2]])


def merge_locked(connection) -> None:
    """The same as ``tasks/account_merge.py: apply_accounts`` does it now: inside the lock, the sweep
    of leftovers, SFTP reads, a new file per run over SFTP, the checked rename."""
    import hashlib

    from hotspare.planning import host_lock as plan
    from tasks.account_merge import write_private_sftp
    from tasks.host_lock import host_lock

    suffix = plan.temporary_suffix(uuid.uuid4().hex[:12])
    with host_lock(connection, "bench merge") as held, connection.open_sftp() as sftp:
        for leftover in plan.leftovers(FILES, {SCRATCH: sftp.listdir(SCRATCH)}):
            sftp.remove(leftover)
        texts = {path: sftp.open(path, "r").read() for path in FILES}
        write_private_sftp(sftp, FILES[2] + suffix, texts[FILES[2]])
        held.check("the rename")
        connection.run(plan.replace_checked_argv(suffix, {FILES[2]: hashlib.sha256(texts[FILES[2]]).hexdigest()}))


def timed(function) -> float:
    started = time.monotonic()
    function()
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slot", type=int, default=None)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="leave the lab folder (the lab itself is taken down)")
    arguments = parser.parse_args()
    started = time.monotonic()
    with own_lab("hotspare-host-lock-bench-", arguments.slot, arguments.keep) as (_lab, env):
        seconds, rounds = measure(env, arguments.reps)
    rows = [[mode, f"{statistics.median(values) * 1000:.1f}", f"{max(values) * 1000:.1f}"] for mode, values in seconds.items()]
    rows.append(["two locked merges at once (a round)", f"{statistics.median(rounds) * 1000:.1f}", f"{max(rounds) * 1000:.1f}"])
    print(f"\n{HOST}, one shared SSH connection, {arguments.reps} interleaved repetitions")
    table(["step", "median ms", "max ms"], rows)
    write_results(
        {"meta": run_meta() | {"total_seconds": round(time.monotonic() - started, 1)}, "seconds": seconds, "two_at_once": rounds},
        Path(tempfile.gettempdir()) / "hotspare-bench" / "host_lock.json",
    )


def measure(env: dict, reps: int) -> tuple[dict[str, list[float]], list[float]]:
    """Each mode ``reps`` times, interleaved; then ``reps`` rounds of two locked merges at once."""
    import tasks.replication  # noqa: F401 (imported before the clock runs: it brings Prefect)
    from tasks.host_lock import host_lock

    root = Path(env["hosts"][HOST]["root"])
    (root / SCRATCH.lstrip("/")).mkdir()
    for path in FILES:
        (root / path.lstrip("/")).write_bytes((root / "etc" / Path(path).name).read_bytes())

    def lock_once(connection) -> None:
        with host_lock(connection, "bench"):
            pass

    modes = {
        "bare command": lambda connection: connection.run(["true"]),
        "lock taken and released": lock_once,
        "merge, unlocked (old)": merge_unlocked,
        "merge, locked": merge_locked,
    }
    seconds: dict[str, list[float]] = {mode: [] for mode in modes}
    rounds: list[float] = []
    with connection_to(env) as connection:
        connection.run(["true"])
        for _ in range(reps):
            for mode, function in modes.items():
                seconds[mode].append(timed(lambda function=function: function(connection)))
        with ThreadPoolExecutor(max_workers=2) as pool:
            for _ in range(reps):
                rounds.append(timed(lambda: list(pool.map(lambda _: merge_locked(connection), range(2)))))
    return seconds, rounds


if __name__ == "__main__":
    main()
