"""Health checks: how long from `lab fail HOST` to the failed event, and what one round costs.

    .venv/bin/python bench/health_bench.py [--slot N] [--reps 2] [--keep]

Starts its own lab and a Prefect test server, loads the lab's fleet (checkers in control, east
via standby-east, west via standby-west; defaults: interval 10 s, 3 failed rounds to down), then:

1. detection: the ``health`` flow runs at default settings; ``lab fail prod-east``; the time
   until the inventory records prod-east's reachability as failed (the round that emits
   ``hotspare.health.failed``). Healed and recovered between repetitions.
2. one round for the lab fleet (8 servers, 2 services, SSH logins and disk space from control).
3. one round for 100 simulated servers: TCP listeners on the lab bridge's address that greet
   like sshd, probed from all three sites (TCP + greeting; no SSH logins, they are not real).

Targets: detection <= 30 s, <= 10 s per 100-server round.
"""

from __future__ import annotations

import argparse
import selectors
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import bench_lab, run_meta, table, write_results

SIMULATED = 100
FIRST_PORT = 40100


def greeting_listeners(address: str, count: int, stop: threading.Event) -> list[int]:
    """``count`` listeners that greet like sshd and close; served by one thread until ``stop``."""
    selector = selectors.DefaultSelector()
    ports = []
    for port in range(FIRST_PORT, FIRST_PORT + count):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((address, port))
        listener.listen(64)
        listener.setblocking(False)
        selector.register(listener, selectors.EVENT_READ)
        ports.append(port)

    def serve():
        while not stop.is_set():
            for key, _ in selector.select(timeout=0.2):
                try:
                    connection, _ = key.fileobj.accept()
                    connection.sendall(b"SSH-2.0-bench\r\n")
                    connection.close()
                except OSError:
                    pass
        for key in list(selector.get_map().values()):
            key.fileobj.close()

    threading.Thread(target=serve, daemon=True).start()
    return ports


def simulated_fleet(fleet, address: str, ports: list[int]):
    servers = list(fleet.servers) + [
        fleet.servers[0].model_copy(update={"name": f"sim-{index:03d}", "address": address, "ssh_port": port})
        for index, port in enumerate(ports)
    ]
    return fleet.model_copy(update={"servers": servers})


def time_rounds(fleet, count: int, **options) -> list[float]:
    from flows.health import active_servers, health_round
    from tasks.health_probes import round_targets

    seconds = []
    for _ in range(count):
        outcome = health_round(fleet, round_targets(fleet, active_servers()), {}, **options)
        seconds.append(outcome.seconds)
    return seconds


def detection(lab, reps: int) -> list[float]:
    """Seconds from `lab fail prod-east` to the recorded failed state, with the flow running
    at default settings in a thread."""
    from flows.health import health
    from hotspare.inventory.health import load_statuses

    def state():
        status = load_statuses().get(("prod-east", "reachability:ssh"))
        return status.state.value if status else None

    def wait(target, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if state() == target:
                return time.monotonic()
            time.sleep(0.1)
        raise RuntimeError(f"prod-east did not become {target} within {seconds} s")

    results = []
    runner = threading.Thread(target=lambda: health(run_seconds=reps * 90 + 60), daemon=True)
    runner.start()
    time.sleep(12)  # a round or so in steady state, at the flow's own phase
    for rep in range(reps):
        failed_at = time.monotonic()
        lab.fail("prod-east")
        try:
            results.append(wait("failed", 60) - failed_at)
            print(f"  detection {rep + 1}: {results[-1]:.1f} s", flush=True)
        finally:
            lab.heal("prod-east")
        wait("ok", 60)
    runner.join(timeout=120)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slot", type=int)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    results = {"meta": run_meta()}
    with bench_lab("hotspare-health-bench.", args.slot, args.keep) as bench:
        from hotspare.access import loaded_fleet
        from hotspare.lab.topology import SlotLayout

        lab = bench.lab
        fleet = loaded_fleet()
        time_rounds(fleet, 1)  # warm: connections, imports
        lab_rounds = time_rounds(fleet, 5)
        stop = threading.Event()
        gateway = SlotLayout(lab.slot).gateway
        ports = greeting_listeners(gateway, SIMULATED, stop)
        big = simulated_fleet(fleet, gateway, ports)
        big_rounds = time_rounds(big, 5, ssh_login=False, hardware=False, freshness=False)
        stop.set()
        detected = detection(lab, args.reps)
    results |= {
        "lab_round_seconds": lab_rounds,
        "simulated_round_seconds": big_rounds,
        "detection_seconds": detected,
        "meta": results["meta"] | {"total_seconds": round(time.monotonic() - bench.started, 1)},
    }
    print()
    table(
        ("measure", "median s", "max s", "target s"),
        [
            (
                "detection: lab fail -> failed event (defaults)",
                f"{statistics.median(detected):.1f}",
                f"{max(detected):.1f}",
                "30",
            ),
            (
                "one round, lab fleet (8 servers, 2 services, 3 sites)",
                f"{statistics.median(lab_rounds):.2f}",
                f"{max(lab_rounds):.2f}",
                "-",
            ),
            (
                f"one round, {SIMULATED} simulated servers + lab, 3 sites",
                f"{statistics.median(big_rounds):.2f}",
                f"{max(big_rounds):.2f}",
                "10",
            ),
        ],
    )
    write_results(results, Path(__file__).parent / "out" / "health.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
