"""Benchmark: what a certificate per run costs (docs/trust-model.md).

Per certificate, N times each, against the bare tool in the same run:

1. bare ``ssh-keygen -s CA -I … -n … -V … -O clear -O source-address=…`` on a key file;
2. the signer (``adapters/ssh_ca.sign``: key check, temporary folder, the same ssh-keygen);
3. the issuer's whole answer over HTTP on loopback: token, Prefect run lookup (run, flow,
   inputs), inventory, plan, signature — for a running run of ``replicate-service``; and its
   two lookups alone, in this process;
4. an ed25519 key pair made in memory (the run's key);
5. an SSH login to prod-east (connect, authenticate, ``true``): the block's key vs the certificate.

    .venv/bin/python bench/certificate_bench.py [--slot N] [--count 30] [--keep]

Prints a table; writes bench/out/certificate_bench.json. Starts its own lab (root).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import bench_lab, run_meta, table, write_results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slot", type=int, default=None)
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the bench's folder at the end")
    args = parser.parse_args()
    with bench_lab("hotspare-certificate-bench.", args.slot, args.keep) as bench:
        results = measure(bench.lab, bench.env, bench.home, args.count)
    results["meta"] = {**run_meta(), "count": args.count, "total_seconds": round(time.monotonic() - bench.started, 1)}
    write_results(results, ROOT / "bench" / "out" / "certificate_bench.json")
    return 0


def milliseconds(action, count: int) -> list[float]:
    times = []
    for _ in range(count):
        clock = time.perf_counter()
        action()
        times.append((time.perf_counter() - clock) * 1000)
    return times


def measure(lab, env: dict, home: Path, count: int) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL
    from prefect.states import Running

    from flows.replicate import replicate_service
    from hotspare import access
    from hotspare.adapters.issuer import request_certificate
    from hotspare.adapters.ssh import Login, SshConnection
    from hotspare.adapters.ssh_ca import Signing, sign, sign_argv
    from hotspare.issuer.service import config_json, new_token
    from hotspare.keys import generate_ed25519
    from hotspare.local_secrets import write_private
    from hotspare.planning.certificates import Requester

    fleet = access.loaded_fleet()
    ca_key = lab.directory / "ssh_ca"
    source = (lab.layout.gateway,)
    signing = Signing("run-bench", ("mirror-west", "prod-east"), "-1m:+10m", source)
    private_key, public_key = generate_ed25519("bench")
    key_file = home / "bench.pub"
    key_file.write_text(public_key + "\n")

    def bare() -> None:
        subprocess.run(sign_argv(ca_key, signing, 1, key_file), check=True, capture_output=True)

    rows = {
        "bare ssh-keygen -s": milliseconds(bare, count),
        "signer (ssh_ca.sign)": milliseconds(lambda: sign(ca_key, public_key, signing), count),
    }

    token = new_token()
    config = home / "issuer.json"
    write_private(config, config_json(ca_key, [(Requester("control", ("127.0.0.1", *source), (), control=True), token)]))
    port = 4290 + lab.slot
    with open(home / "issuer.log", "wb") as log:  # the issuer keeps its own copy of the descriptor
        issuer = subprocess.Popen(
            [sys.executable, "-m", "hotspare.issuer.service", "--config", str(config), "--listen", f"127.0.0.1:{port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(ROOT)},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(url, issuer)
        with get_client(sync_client=True) as client:
            run = client.create_flow_run(replicate_service, parameters={"service": "app1"}, state=Running())
        run_id = str(run.id)
        issued = request_certificate(url, token, run_id, public_key)
        rows["issuer over HTTP (lookup + plan + sign)"] = milliseconds(
            lambda: request_certificate(url, token, run_id, public_key), count
        )
        # its parts, in this process: the Prefect lookup and the inventory read
        from hotspare.issuer import facts

        rows["  part: Prefect lookup (run, flow, inputs)"] = milliseconds(lambda: facts.run_facts(run_id), count)
        rows["  part: fleet + inventory (layout)"] = milliseconds(facts.fleet_layout, count)
    finally:
        issuer.kill()
        issuer.wait(timeout=10)
    rows["ed25519 key pair in memory"] = milliseconds(lambda: generate_ed25519("bench"), count)
    endpoint = access.endpoint(fleet, "prod-east")
    block_login = access.login(fleet.ssh_block_of(fleet.server("prod-east")))
    certificate_login = Login("root", private_key, issued.certificate)

    def login_with(login: Login) -> None:
        with SshConnection(endpoint, login) as connection:
            connection.run(["true"])

    rows["SSH login + true, block key"] = milliseconds(lambda: login_with(block_login), count)
    rows["SSH login + true, certificate"] = milliseconds(lambda: login_with(certificate_login), count)
    summary = {
        name: {
            "median_ms": round(statistics.median(times), 1),
            "p90_ms": round(sorted(times)[int(0.9 * len(times)) - 1], 1),
            "min_ms": round(min(times), 1),
        }
        for name, times in rows.items()
    }
    print(f"\n{count} of each, load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores:")
    table(
        ("step", "median ms", "p90 ms", "min ms"),
        [(name, values["median_ms"], values["p90_ms"], values["min_ms"]) for name, values in summary.items()],
    )
    return {"summary": summary, "raw_ms": {name: [round(value, 2) for value in times] for name, times in rows.items()}}


def wait_for(url: str, process) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the issuer did not start (see issuer.log in the bench folder)")


if __name__ == "__main__":
    raise SystemExit(main())
