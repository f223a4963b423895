"""What the status page key costs now that it lives in a Prefect block, against the bare block
load and the old key file in the same run.

    .venv/bin/python bench/status_page_key_bench.py [--reps 200]

Starts a Prefect test server in a temporary home (no lab) and times, interleaved, ``--reps``
times each:

1. bare: ``StatusPageKey.load`` (one API round trip, what any block costs);
2. file: the old way, ``$HOTSPARE_HOME/status-page.key`` checked 0600, read and decoded;
3. uncached: ``tasks/status_page_key.key_from_block`` after its cache was dropped (the load, the
   look for an old file beside it);
4. cached: ``key_from_block`` within its cache time (what each unsubscribe link of a notice and
   each form request costs between refreshes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import isolate_environment, run_meta, table, write_results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=200, help="timings of each kind (default 200)")
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "hotspare-bench" / "status_page_key.json"))
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hotspare-bench-key-") as folder:
        home = Path(folder)
        isolate_environment(home)
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=180):
            results = measure(home, args.reps)
    results["meta"] = run_meta() | {"total_seconds": round(time.monotonic() - started, 1), "reps": args.reps}
    write_results(results, args.out)
    return 0


def measure(home: Path, reps: int) -> dict:
    from blocks.credentials import StatusPageKey
    from hotspare.local_secrets import private_file
    from hotspare.planning.subscriptions import key_text
    from tasks.status_page_key import forget_status_page_key, key_from_block

    name = f"bench-status-page-key-{uuid.uuid4().hex[:8]}"
    key = key_from_block(name, home)  # made here: the first use
    old_file = home / "old-home"
    old_file.mkdir(mode=0o700)
    path = old_file / "status-page.key"
    path.write_text(key.hex() + "\n")
    path.chmod(0o600)

    def bare() -> None:
        StatusPageKey.load(name)

    def file() -> None:
        private_file(path, "the status page key")
        text = key_text(path.read_text())
        assert text is not None and bytes.fromhex(text) == key

    def uncached() -> None:
        forget_status_page_key()
        assert key_from_block(name, home) == key

    def cached() -> None:
        assert key_from_block(name, home) == key

    kinds = {"bare StatusPageKey.load": bare, "old key file": file, "key_from_block, cache dropped": uncached}
    timings: dict[str, list[float]] = {kind: [] for kind in [*kinds, "key_from_block, cached"]}
    for _ in range(reps):
        for kind, function in kinds.items():
            began = time.perf_counter()
            function()
            timings[kind].append(time.perf_counter() - began)
        key_from_block(name, home)  # fill the cache, then time a hit
        began = time.perf_counter()
        cached()
        timings["key_from_block, cached"].append(time.perf_counter() - began)
    bare_median = statistics.median(timings["bare StatusPageKey.load"])
    rows, summary = [], {}
    for kind, values in timings.items():
        median = statistics.median(values)
        p90 = statistics.quantiles(values, n=10)[-1]
        summary[kind] = {"median_ms": round(median * 1000, 3), "p90_ms": round(p90 * 1000, 3)}
        rows.append((kind, f"{median * 1000:.3f}", f"{p90 * 1000:.3f}", f"{median / bare_median:.3f}"))
    load = os.getloadavg()
    print(f"\n{reps} of each, interleaved; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores:")
    table(("kind", "median ms", "p90 ms", "x bare load"), rows)
    return {"timings": summary, "load_average": load}


if __name__ == "__main__":
    sys.exit(main())
