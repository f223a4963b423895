"""Benchmark: hotspare backup and rebuild against bare restic on the same data, same hosts, same run.

    .venv/bin/python bench/rebuild_bench.py [--slot 8] [--files 10000] [--file-kib 100] [--home DIR]

Starts its own lab (default slot 8) and a Prefect test server, fills app1's data on prod-east
with random files (default 10,000 x 100 KiB = 1 GB), then measures:

    bare restic backup   (prod-east -> storage-vault, root over SFTP, fresh repository)
    hotspare backup flow (same data, its own repository through the service's append-only account)
    bare restic restore  (standby-east <- storage-vault, root over SFTP, the flow's snapshot)
    hotspare rebuild     (prod-east and mirror-west failed; restore through the append-only
                          account, verify, accounts, place, temporary logins, start, health
                          check, DNS cutover)

Target: rebuild <= 1.2 x bare restore + 30 s. Prints a table; not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import isolate_environment, lab_and_prefect, root_restic, write_random_files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slot", type=int, default=8)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--file-kib", type=int, default=100)
    parser.add_argument("--home", default=None, help="HOTSPARE_HOME, kept afterwards (default: a new temporary folder, removed)")
    args = parser.parse_args()
    started = time.monotonic()
    home = Path(args.home or tempfile.mkdtemp(prefix="hotspare-bench."))
    isolate_environment(home, replace=False, test_server_settings=False)
    with lab_and_prefect(home, args.slot, args.home is not None, started) as (lab, env):
        rows = run(lab, env, args)
    width = max(len(name) for name, _ in rows)
    print(f"\n{'measurement'.ljust(width)}  seconds")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
    return 0


def run(lab, env: dict, args) -> list[tuple[str, str]]:
    from flows.backup import backup
    from flows.rebuild import rebuild
    from hotspare import access
    from hotspare.cli import main as cli
    from hotspare.planning import rebuild as rebuild_plan
    from hotspare.planning import restic as restic_plan
    from hotspare.planning import shell_programs as shell
    from tasks.backup import plan_grant, repository_password, run_restic, storage_grant

    lab.register_blocks()
    assert cli(["fleet", "load", env["fleet_file"]]) == 0
    fleet = access.loaded_fleet()
    service = fleet.service("app1")
    rows: list[tuple[str, str]] = []
    data = Path(env["hosts"]["prod-east"]["root"]) / "srv/app1/data/bench"
    started = time.monotonic()
    write_random_files(data, args.files, args.file_kib * 1024)
    os.sync()
    seconds = time.monotonic() - started
    rows.append(
        (f"generate {args.files} x {args.file_kib} KiB ({args.files * args.file_kib / 1024 / 1024:.2f} GiB)", f"{seconds:.1f}")
    )
    password = repository_password(service.backup.password_block)
    storage = fleet.server("storage-vault")
    app_repository = restic_plan.repository_of("app1", storage.name, service.backup).path
    bare_repository = "/srv/backup/bare-app1"

    # bare restic backup as root over SFTP, fresh repository (init not timed), same data, same hosts
    with access.connect(fleet, "prod-east") as production, access.connect(fleet, "storage-vault") as vault:
        try:
            with root_restic(production, env, storage, bare_repository, "/run/hotspare/bench-root") as bare:
                run_restic(production, bare + ["init"], password)
                started = time.monotonic()
                run_restic(
                    production, shell.in_folder("/", bare + ["backup", "--quiet", "--host", "app1", "srv/app1/data"]), password
                )
                bare_backup = time.monotonic() - started
        finally:
            vault.run(shell.remove_tree(bare_repository, "/srv/backup"), check=False)
        # the flow's repository, created ahead too (as the backup task does: storage_grant with
        # create=True) so both sides skip the 3 s key derivation of init
        with storage_grant(fleet, production, plan_grant(fleet, "app1", "prod-east", "bench-init"), password, create=True):
            pass
    rows.append(("bare restic backup (prod-east -> storage-vault)", f"{bare_backup:.1f}"))
    started = time.monotonic()
    result = backup(service="app1", prune=False)["app1"]
    flow_backup = time.monotonic() - started
    rows.append(("hotspare backup flow (accounts, manifest, backup)", f"{flow_backup:.1f}"))
    rows.append(("  of which restic + staging in the task", f"{result['duration_s']:.1f}"))
    snapshot = result["snapshot_id"]

    # bare restic restore of the flow's snapshot, as root over SFTP, on the standby the rebuild will use
    target = f"{rebuild_plan.RESTORE_BASE}/bench-bare"
    with access.connect(fleet, "standby-east") as standby:
        with root_restic(standby, env, storage, app_repository, "/run/hotspare/bench-root") as bare:
            started = time.monotonic()
            run_restic(standby, bare + ["restore", snapshot, "--target", target], password)
            bare_restore = time.monotonic() - started
        standby.run(shell.remove_tree(target, rebuild_plan.RESTORE_BASE), timeout=600)
    rows.append(("bare restic restore (standby-east <- storage-vault)", f"{bare_restore:.1f}"))

    lab.fail("prod-east")
    lab.fail("mirror-west")
    try:
        started = time.monotonic()
        outcome = rebuild(service="app1", standby="standby-east", yes=True)
        rebuild_seconds = time.monotonic() - started
    finally:
        lab.heal("prod-east")
        lab.heal("mirror-west")
    rows.append(("hotspare rebuild flow (end to end)", f"{rebuild_seconds:.1f}"))
    rows.append(("  of which restic restore", f"{outcome['restore']['restore_s']:.1f}"))
    rows.append(("  of which manifest verification", f"{outcome['restore'].get('verify_s', 0):.1f}"))
    limit = 1.2 * bare_restore + 30
    rows.append(("target: 1.2 x bare restore + 30 s", f"{limit:.1f} -> {'MET' if rebuild_seconds <= limit else 'MISSED'}"))
    rows.append(("rebuild / bare restore", f"{rebuild_seconds / bare_restore:.2f}x"))
    rows.append(("backup flow / bare backup", f"{flow_backup / bare_backup:.2f}x"))
    return rows


if __name__ == "__main__":
    sys.exit(main())
