"""``python -m hotspare.warm_worker --pool hotspare-east --name worker-east``: start a facility's
warm worker (``worker.py``), like ``prefect worker start --type process`` with the same settings
(``PREFECT_API_URL``, ``PREFECT_API_AUTH_STRING``, ``PREFECT_WORKER_QUERY_SECONDS`` …)."""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hotspare.warm_worker", description=__doc__)
    parser.add_argument("--pool", required=True, help="the facility's process work pool, hotspare-<facility>")
    parser.add_argument("--name", required=True, help="the worker's name as the Prefect server shows it")
    parser.add_argument("--limit", type=int, default=None, help="runs this worker takes at a time")
    parser.add_argument(
        "--package",
        action="append",
        dest="packages",
        metavar="PACKAGE",
        help="a package whose modules the warm process imports (default: flows)",
    )
    args = parser.parse_args(argv)

    import anyio
    from prefect.settings import PREFECT_WORKER_HEARTBEAT_SECONDS
    from prefect.utilities.processutils import setup_signal_handlers_worker

    from hotspare.warm_worker.worker import WarmProcessWorker

    setup_signal_handlers_worker(os.getpid(), "the warm worker", print)
    worker = WarmProcessWorker(
        work_pool_name=args.pool,
        name=args.name,
        limit=args.limit,
        heartbeat_interval_seconds=int(PREFECT_WORKER_HEARTBEAT_SECONDS.value()),
        create_pool_if_not_found=False,
        packages=tuple(args.packages or ("flows",)),
    )
    try:
        anyio.run(worker.start)
    except KeyboardInterrupt:
        print(f"worker {args.name!r} stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
