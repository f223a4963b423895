"""Benchmark: append-only backups against bare restic as root over SFTP, same data, same run.

    .venv/bin/python bench/backup_bench.py [--slot N] [--files 5000] [--file-kib 100] [--repeat 3]

Starts its own lab (a free slot) and a Prefect test server, fills app1's data on prod-east with
random files (default 5,000 x 100 KiB = 0.5 GB), then measures on the same data:

    bare restic, root over SFTP   the old way: production holds a key that opens the storage host
    restic via the account        the same command through the service's chrooted, SFTP-only,
                                  append-only account (internal-sftp -P ..., sticky folders)
    grant + revoke alone          prepare the account and repository layout, authorize a run key,
                                  then revoke it and hand the run's files to root (no restic)
    hotspare backup task          the whole task: staging, manifest, grant, restic, revoke

Full backups go to fresh repositories (init not timed); incremental ones repeat with nothing
changed (median of --repeat). Prints a table, writes bench/out/backup.json; not a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import bench_lab, run_meta, table, write_random_files, write_results

OUT = ROOT / "bench" / "out" / "backup.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slot", type=int, default=None)
    parser.add_argument("--files", type=int, default=5_000)
    parser.add_argument("--file-kib", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the lab folder afterwards")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    with bench_lab("hotspare-bench.", args.slot, args.keep) as bench:
        rows, results = run(bench.lab, bench.env, args)
    table(["measurement", "seconds"], rows)
    meta = {**run_meta(), "total_seconds": round(time.monotonic() - bench.started, 1)}
    write_results({"meta": meta, "arguments": vars(args), **results}, args.out)
    return 0


def run(lab, env: dict, args) -> tuple[list, dict]:
    from flows.backup import backup
    from hotspare import access
    from hotspare.planning import shell_programs as shell
    from tasks.backup import plan_grant, repository_password, run_restic, storage_grant

    fleet = access.loaded_fleet()
    service = fleet.service("app1")
    storage = fleet.server("storage-vault")
    password = repository_password(service.backup.password_block)
    data = Path(env["hosts"]["prod-east"]["root"]) / "srv/app1/data/bench"
    write_random_files(data, args.files, args.file_kib * 1024)
    paths = ["srv/app1/data"]
    results: dict = {"files": args.files, "file_kib": args.file_kib}

    def timed(connection, argv) -> float:
        begun = time.monotonic()
        run_restic(connection, argv, password)
        return time.monotonic() - begun

    def median_of(action) -> float:
        return statistics.median(action() for _ in range(args.repeat))

    with access.connect(fleet, "prod-east") as production, access.connect(fleet, "storage-vault") as vault:
        # The old way: root's key on production, repository reached as root.
        folder = "/run/hotspare/bench-root"
        key, known = f"{folder}/key", f"{folder}/known_hosts"
        production.run(shell.write_secret_file(key), stdin=Path(env["ssh"]["key"]).read_bytes())
        production.run(shell.write_secret_file(known), stdin=f"{storage.address} {storage.host_key}\n".encode())
        sftp = f"ssh -F /dev/null -i {key} -o BatchMode=yes -o UserKnownHostsFile={known} root@{storage.address} -s sftp"
        bare = ["restic", "-r", f"sftp:root@{storage.address}:/srv/backup/bare-app1", "-o", f"sftp.command={sftp}"]
        grant = plan_grant(fleet, "app1", "prod-east", "bench-account")
        try:
            run_restic(production, bare + ["init"], password)
            bare_command = shell.in_folder("/", bare + ["backup", "--quiet", "--host", "app1", *paths])
            # the same restic command through the service's append-only account (grant not timed)
            with storage_grant(fleet, production, grant, password, create=True):
                account_command = shell.in_folder("/", grant.restic("backup", "--quiet", "--host", "app1", *paths))
                results["bare_full"] = timed(production, bare_command)
                results["account_full"] = timed(production, account_command)
                bare_runs, account_runs = [], []
                for _ in range(args.repeat):  # interleaved: machine load hits both alike
                    bare_runs.append(timed(production, bare_command))
                    account_runs.append(timed(production, account_command))
                results["bare_incremental"] = statistics.median(bare_runs)
                results["account_incremental"] = statistics.median(account_runs)
                # what the old task ran before each backup and the new one no longer does
                results["old_repository_probe"] = median_of(lambda: timed(production, bare + ["cat", "config"]))
        finally:
            production.run(shell.remove_tree(folder, shell.RUN_DIR), check=False)
            vault.run(shell.remove_tree("/srv/backup/bare-app1", "/srv/backup"), check=False)

        def grant_alone() -> float:
            begun = time.monotonic()
            with storage_grant(fleet, production, plan_grant(fleet, "app1", "prod-east", "bench-grant"), password):
                pass
            return time.monotonic() - begun

        results["grant_and_revoke"] = median_of(grant_alone)

    def task_alone() -> float:
        outcome = backup(service="app1", prune=False)["app1"]
        return outcome["duration_s"]

    results["task_incremental"] = median_of(task_alone)
    overhead = results["account_incremental"] / results["bare_incremental"] - 1
    rows = [
        (f"data: {args.files} x {args.file_kib} KiB", ""),
        ("bare restic, root over SFTP: full", f"{results['bare_full']:.2f}"),
        ("restic via the append-only account: full", f"{results['account_full']:.2f}"),
        ("bare restic, root over SFTP: incremental (median)", f"{results['bare_incremental']:.2f}"),
        ("restic via the append-only account: incremental (median)", f"{results['account_incremental']:.2f}"),
        ("grant + revoke + hand files to root (median)", f"{results['grant_and_revoke']:.2f}"),
        ("old task's repository probe, now gone (median)", f"{results['old_repository_probe']:.2f}"),
        ("hotspare backup task, incremental (median)", f"{results['task_incremental']:.2f}"),
        ("account vs root, full", f"{(results['account_full'] / results['bare_full'] - 1) * 100:+.1f} %"),
        ("account vs root, incremental", f"{overhead * 100:+.1f} %"),
    ]
    return rows, results


if __name__ == "__main__":
    sys.exit(main())
