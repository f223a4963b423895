"""Benchmark: from a production's failure to its users served by the mirror, as users see it
(through a caching resolver), unattended and phone-approved, phase by phase. Prints tables; not a test.

    sudo .venv/bin/python bench/users_rto_bench.py                  # 2 rounds of each (~6 min once the machine is quiet)
    sudo .venv/bin/python bench/users_rto_bench.py --rounds 1 --quiet-wait 0

Starts its own lab, Prefect test server and inventory (bench/failover_bench.py's set-up), with
the lab's fleet changed only where the mode needs it: app1's health policy (``unattended`` or
``approval``), the office line marked ``may_approve`` (the approver is on the chain's first call),
and the health check's own defaults otherwise (10 s rounds, 3 failed rounds to declare down,
confirmation rounds 3x faster). One replication first: it sets the record's standing TTL (the
zone's ``failover_ttl``, 20 s, for a service whose policy fails it over).

Per round: the layout is put back, users' resolver (the lab's unbound) is asked for app1 so its
cache holds production's address *just before* the failure (the worst case), then
``lab.fail("prod-east")`` starts the clock and the health run checks in a thread.

- **unattended**: the health run fails app1 over itself as soon as the quorum declares prod-east
  down (fenced through the BMC).
- **phone**: the health run declares it down; as the automations would, the bench then submits
  the failover (an in-process call of the flow: the served deployment's start latency is
  bench/worker_bench.py's subject) and starts paging with the health event; an approver thread
  presses 2 on the first call that offers the plan.

A prober asks the resolver every 50 ms and, once it answers the mirror's address, fetches the
health URL there: the first 2xx is "users served". Phases: detection (failure → declared down in
the inventory), decision (→ approval given: 0 unattended), execution (→ the authoritative server
answers the mirror), caches (→ the resolver does), served (→ the app answers through it).
Anchors in the same run: the record's TTL (the cache's bound) and the targets (unattended ≤ 60 s,
phone ≤ 90 s). Writes bench/out/users_rto.json.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench.common import epoch, isolate_environment, lab_and_prefect, round_arguments, run_meta, table, write_results  # noqa: E402

from failover_bench import SERVICE, Bench, DnsProber, wait_for_quiet  # noqa: E402

OUT = ROOT / "bench" / "out" / "users_rto.json"
TARGETS = {"unattended": 60.0, "phone": 90.0}
ROUND_LIMIT = 180.0


class UsersProber(DnsProber):
    """Asks the users' resolver, in a thread, until the app answers through it at the mirror;
    notes when the authoritative server, then the resolver, first answered the mirror."""

    def __init__(self, bench: Bench, resolver: dict, mirror: str) -> None:
        super().__init__(bench, mirror)
        self.resolver = resolver
        self.times: dict[str, float] = {}

    def resolve(self) -> list[str]:
        import dns.message
        import dns.query

        response = dns.query.udp(
            dns.message.make_query(self.bench.dns_name, "A"), self.resolver["address"], port=self.resolver["port"], timeout=1.0
        )
        return [item.address for answer in response.answer for item in answer if hasattr(item, "address")]

    def probe_once(self) -> bool:
        from hotspare.probes import http_get_via_dns

        self.probes += 1
        try:
            authoritative, users = self.bench.dns_answer(), self.resolve()
        except Exception:
            authoritative, users = [], []
        now = time.time()
        if authoritative == [self.address]:
            self.times.setdefault("authoritative", now)
        if users == [self.address]:
            self.times.setdefault("resolver", now)
            try:
                status, _body, used = http_get_via_dns(self.bench.health_url, lambda _name: users, timeout=1.0)
            except OSError:
                status, used = 0, ""
            if 200 <= status < 300 and used == self.address and self.answered_at is None:
                self.answered_at = self.times["served"] = time.time()
        return self.answered_at is not None


def fleet_for(env: dict, home: Path, mode: str) -> Path:
    """The lab fleet with app1's policy for ``mode`` and the office line as an approver."""
    data = yaml.safe_load(Path(env["fleet_file"]).read_text())
    data.setdefault("health", {})["services"] = [
        {"name": SERVICE, "automatic_failover": "unattended" if mode == "unattended" else "approval"}
    ]
    for contact in data["contacts"]:
        if contact["name"] == "Office":
            contact["may_approve"] = True
    path = home / f"fleet-{mode}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def load(path: Path) -> None:
    from hotspare import access
    from hotspare.cli import main as cli

    if cli(["fleet", "load", str(path)]) != 0:
        raise RuntimeError(f"hotspare fleet load {path} failed")
    access.close_connections()


def clear_health() -> None:
    from sqlmodel import delete

    from hotspare.inventory import session
    from hotspare.inventory.health import HealthComponentRow, HealthHistoryRow, ReplacementRow
    from hotspare.inventory.incidents import list_incidents, resolve

    with session() as db:
        for row_type in (HealthComponentRow, HealthHistoryRow, ReplacementRow):
            db.exec(delete(row_type))
    for incident in list_incidents(open_only=True, limit=50):
        resolve(incident["id"], "benchmark", "reset between rounds")


def declared_down_at(since: float) -> float | None:
    from hotspare.inventory.health import history

    rows = [row for row in history("prod-east") if row.state == "failed" and epoch(row.at) >= since]
    return min(epoch(row.at) for row in rows) if rows else None


def wait_until(what: str, probe, seconds: float):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    raise RuntimeError(f"benchmark: {what} did not happen within {seconds:.0f} s")


def health_event(since: datetime):
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter

    wanted = EventFilter(
        occurred=EventOccurredFilter(since=since),
        event=EventNameFilter(name=["hotspare.health.failed"]),
        resource=EventResourceFilter(id=["hotspare.server.prod-east"]),
    )
    with get_client(sync_client=True) as client:
        found = client.read_events(filter=wanted, limit=10)
    return found.events[0] if found.events else None


def one_round(bench: Bench, env: dict, mode: str) -> dict:
    """Fail prod-east and time the phases until users are served through their resolver."""
    from flows.failover import failover
    from flows.health import health
    from flows.incident import page
    from hotspare.lab.phone import PhoneControl
    from tasks.dns_cutover import keep_standing_ttl

    bench.reset_layout()
    clear_health()
    ttl = keep_standing_ttl(SERVICE)["ttl"]
    prober = UsersProber(bench, env["resolver"], bench.mirror_address)
    if prober.resolve() != [bench.prod_address]:
        raise RuntimeError("the resolver does not answer production's address before the failure")
    cached_at = time.time()
    phone = PhoneControl(env)
    calls_before = len(phone.requests("call"))
    started_wall = datetime.now(timezone.utc)
    bench.lab.fail("prod-east")
    failed_at = time.time()
    times: dict[str, float] = {}
    with ThreadPoolExecutor(4) as pool, prober:
        checking = pool.submit(health, run_seconds=ROUND_LIMIT / 2)
        if mode == "phone":
            declared = wait_until("prod-east declared down", lambda: declared_down_at(failed_at), ROUND_LIMIT)
            running = pool.submit(failover, SERVICE, approval_timeout_seconds=int(ROUND_LIMIT))
            event = wait_until("the health event", lambda: health_event(started_wall), 30)
            paging = pool.submit(
                page, event=event.event, resource_id=event.resource.id, payload_json=json.dumps(event.payload), poll_seconds=0.2
            )

            def offered_call():
                for call in phone.requests("call")[calls_before:]:
                    if "Press 2" in call["form"].get("Twiml", ""):
                        return call
                return None

            call = wait_until("a call offering the plan", offered_call, 60)
            times["call"] = call["at"]
            answer = phone.answer(call["sid"], digits="2")
            times["approved"] = time.time()
            if "Approved" not in answer["webhook_body"]:
                raise RuntimeError(f"the keypress did not approve: {answer}")
            result = running.result(timeout=ROUND_LIMIT)
            paging.result(timeout=ROUND_LIMIT)
        served = prober.wait(ROUND_LIMIT)
        summary = checking.result(timeout=ROUND_LIMIT)
    declared = declared_down_at(failed_at)
    if mode == "unattended":
        outcomes = [item for item in summary.get("failovers", []) if item.get("service") == SERVICE]
        result = outcomes[0] if outcomes else {"outcome": "none"}
        times["approved"] = declared or failed_at
    if served is None or declared is None:
        raise RuntimeError(f"{mode}: users were not served within {ROUND_LIMIT:.0f} s ({result})")
    phases = {
        "detection": declared - failed_at,
        "decision": times["approved"] - declared,
        "execution": prober.times["authoritative"] - times["approved"],
        "caches": prober.times["resolver"] - prober.times["authoritative"],
        "served": served - prober.times["resolver"],
    }
    return {
        "mode": mode,
        "total": round(served - failed_at, 3),
        "phases": {k: round(v, 3) for k, v in phases.items()},
        "ttl": ttl,
        "cached_before_failure_s": round(failed_at - cached_at, 3),
        "first_call_after_failure_s": round(times["call"] - failed_at, 3) if "call" in times else None,
        "outcome": result.get("outcome") if isinstance(result, dict) else str(result),
    }


def main() -> int:
    args = round_arguments(__doc__, OUT, rounds=2, what="rounds of each mode")
    args.runs, args.warm_pool_run, args.no_planned = args.rounds, False, True  # what failover_bench.Bench reads

    quiet = wait_for_quiet(args.max_load, args.quiet_wait)
    home = Path(tempfile.mkdtemp(prefix="hotspare-users-rto-bench."))
    isolate_environment(home)
    started = time.monotonic()
    runs: dict[str, list[dict]] = {"unattended": [], "phone": []}
    with lab_and_prefect(home, args.slot, args.keep, started) as (lab, env):
        from hotspare import access
        from hotspare.acknowledgements import serve
        from hotspare.lab.phone import acknowledgement_port

        bench = Bench(lab, env, args)
        bench.setup()
        bench.reset_layout()
        webhook = serve(access.loaded_fleet(), "127.0.0.1", acknowledgement_port(lab.slot))  # as `hotspare serve` does
        for index in range(args.rounds):
            for mode in ("unattended", "phone") if index % 2 == 0 else ("phone", "unattended"):
                load(fleet_for(env, home, mode))
                if not runs["unattended"] and not runs["phone"]:
                    bench.replicate()  # a verified copy, and the record's standing TTL
                print(f"round {index + 1}, {mode}:", flush=True)
                run = one_round(bench, env, mode)
                print(f"  users served after {run['total']:.2f} s: {run['phases']}", flush=True)
                runs[mode].append(run)
        bench.reset_layout()
        webhook.shutdown()
        webhook.server_close()
    print(
        "\nFailure of prod-east -> app1's users served by mirror-west through their caching resolver "
        "(the old answer cached just before the failure), medians:"
    )
    rows, medians = [], {}
    for mode, items in runs.items():
        medians[mode] = statistics.median(run["total"] for run in items)
        phases = {name: statistics.median(run["phases"][name] for run in items) for name in items[0]["phases"]}
        rows.append(
            (
                mode,
                f"{medians[mode]:.1f}",
                *(f"{phases[name]:.1f}" for name in phases),
                items[0]["ttl"],
                f"<= {TARGETS[mode]:.0f} s: {'met' if medians[mode] <= TARGETS[mode] else 'missed'}",
            )
        )
    table(("mode", "total s", "detection", "decision", "execution", "caches", "served", "record TTL", "target"), rows)
    print(
        "\n  caches: from 0 up to the record's TTL after the cutover, by when the resolver last fetched the old"
        " answer (users keep asking, so a fetch just before the cutover costs a whole TTL);"
        "\n  phone: decision = the plan made and offered in the first call, and the keypress taken (the approver"
        " presses at once); the failover is submitted in process (a served deployment adds its start latency)."
    )
    write_results(
        {
            "meta": {**run_meta(), "total_seconds": round(time.monotonic() - started, 1), "load_wait": quiet},
            "runs": runs,
            "medians": medians,
            "targets": TARGETS,
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
