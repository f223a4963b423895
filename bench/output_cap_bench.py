"""The SSH adapter's output cap: the orchestrator's memory and time under a 400 MB answer.

    .venv/bin/python bench/output_cap_bench.py [--slot N] [--reps 3] [--keep]

Starts its own lab (no Prefect needed) and, for each repetition, runs in a fresh Python process
(so each peak is its own) one command on prod-east through ``SshConnection.run``:

1. baseline: ``echo ok`` (imports, connection, a small answer);
2. capped: ``head -c 400M /dev/zero`` at the default caps (16 MiB stdout): fails with the cap's
   sentence after reading 16 MiB;
3. uncapped: the same command with ``max_stdout`` raised to 512 MiB, i.e. what the adapter did
   before the cap (kept every byte);

and bare ``ssh … head -c 400M /dev/zero > /dev/null`` (OpenSSH, same key and pinned host key)
for the time the same bytes take without Python. Peak RSS is the child's own
``resource.getrusage(RUSAGE_SELF).ru_maxrss``; times are ``time.monotonic`` around the call.

Target: the capped peak stays within ~40 MiB of the baseline (the cap plus the SSH window).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import isolate_environment, run_meta, start_lab, table, write_results
from hotspare.lab.remote import host_ssh_argv

HOST = "prod-east"
BIG = ["head", "-c", "400M", "/dev/zero"]
MODES = {"baseline": (["echo", "ok"], None), "capped": (BIG, None), "uncapped": (BIG, 512 << 20)}


def child(env_path: str, mode: str) -> None:
    """Run one mode through the adapter in this process and print its peak RSS and time as JSON."""
    import resource

    from hotspare.adapters.errors import HotspareError
    from hotspare.adapters.ssh import Endpoint, Login, SshConnection
    from hotspare.fleet.load import load_fleet

    env = json.loads(Path(env_path).read_text())
    fleet = load_fleet(env["fleet_file"])
    server = fleet.server(HOST)
    secrets = json.loads(Path(env["secrets_file"]).read_text())
    login = Login(env["ssh"]["user"], secrets["ssh"]["private_key"])
    argv, max_stdout = MODES[mode]
    with SshConnection(Endpoint(server.name, server.address, server.ssh_port, server.host_key), login) as connection:
        connection.run(["true"])
        before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.monotonic()
        try:
            result = connection.run(argv, timeout=300, max_stdout=max_stdout)
            outcome = f"ok, {len(result.stdout)} bytes kept"
        except HotspareError as error:
            outcome = str(error)
        seconds = time.monotonic() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {"mode": mode, "peak_mib": peak_kib / 1024, "before_mib": before_kib / 1024, "seconds": seconds, "outcome": outcome}
        )
    )


def measure(env_path: Path, mode: str) -> dict:
    completed = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--env", str(env_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if completed.returncode != 0:
        raise SystemExit(f"{mode} failed: {completed.stderr.strip()[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def bare_ssh_seconds(env: dict) -> float:
    started = time.monotonic()
    with open("/dev/null", "wb") as sink:
        subprocess.run(host_ssh_argv(env, HOST, BIG), stdout=sink, check=True, timeout=600)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slot", type=int, default=None)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the lab folder (the lab itself is taken down)")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--env", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        return child(arguments.env, arguments.child)

    started = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="hotspare-output-cap-bench-"))
    isolate_environment(home)
    lab = None
    try:
        lab, env = start_lab(home / "lab", arguments.slot)
        print(f"lab up in slot {lab.slot} in {time.monotonic() - started:.1f} s", flush=True)
        env_path = home / "env.json"
        env_path.write_text(json.dumps(env))
        runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
        bare: list[float] = []
        for repetition in range(arguments.reps):
            for mode in MODES:
                runs[mode].append(measure(env_path, mode))
            bare.append(bare_ssh_seconds(env))
            print(f"repetition {repetition + 1}/{arguments.reps} done", flush=True)
    finally:
        if lab is not None:
            lab.down()
    rows = [
        [
            mode,
            f"{statistics.median(r['peak_mib'] for r in runs[mode]):.1f}",
            f"{statistics.median(r['seconds'] for r in runs[mode]):.2f}",
            runs[mode][-1]["outcome"][:90],
        ]
        for mode in MODES
    ]
    rows.append(["bare ssh > /dev/null", "-", f"{statistics.median(bare):.2f}", "400 MiB read by OpenSSH"])
    print(f"\nmedian of {arguments.reps}: peak RSS of the orchestrator process, time of the command")
    table(["run", "peak RSS MiB", "seconds", "outcome"], rows)
    meta = run_meta() | {"total_seconds": round(time.monotonic() - started, 1)}
    write_results(
        {"meta": meta, "runs": runs, "bare_ssh_seconds": bare}, Path(tempfile.gettempdir()) / "hotspare-bench" / "output_cap.json"
    )
    if not arguments.keep:
        import shutil

        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
