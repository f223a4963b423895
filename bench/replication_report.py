"""Summary and printed report of bench/replication_bench.py (medians, ratios, tables).

Kept apart from the measurements so each module stays readable; nothing here touches the lab.
"""

from __future__ import annotations

import statistics

from bench.common import table

COPY_TARGET = 1.15  # hotspare's copy step over the old bare push, full copy and 1 % changed
VERIFY_TARGET = 1.3  # hotspare's verify step over the old bare push `rsync -anc`
FLOW_TARGET = (1.5, 0.5)  # the whole replicate flow <= 1.5 x the bare push + 0.5 s, every scenario


def median(values) -> float | None:
    values = [value for value in values if value is not None]
    return round(statistics.median(values), 3) if values else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return round(numerator / denominator, 2) if numerator is not None and denominator else None


def summarize(repetitions: list[dict]) -> dict:
    """Medians over the repetitions; overheads as the median of per-repetition differences (the
    same repetition ran both, so the machine's drift between repetitions cancels out)."""

    def of(pick) -> float | None:
        return median(pick(r) for r in repetitions)

    summary = {
        "push_seconds": of(lambda r: r["copy"]["push"]["seconds"]),
        "push_with_ssh_seconds": of(lambda r: r["copy"]["push"]["with_ssh"]),
        "push_sync_seconds": of(lambda r: r["copy"]["push"].get("sync_seconds")),
        "push_and_sync_seconds": of(lambda r: r["copy"]["push"]["seconds"] + r["copy"]["push"].get("sync_seconds", 0.0)),
        "pull_seconds": of(lambda r: r["copy"]["pull"]["seconds"]),
        "scoped_seconds": of(lambda r: r["copy"]["scoped"]["seconds"]),
        "scoped_key_seconds": of(lambda r: r["copy"]["scoped"]["key_seconds"]),
        "product_argv_seconds": of(lambda r: r["copy"]["product_argv"]["seconds"]),
        "copy_step_seconds": of(lambda r: r["hotspare"]["copy_step"]),
        "flow_seconds": of(lambda r: r["hotspare"]["seconds"]),
        "verify_step_seconds": of(lambda r: r["hotspare"]["verify_step"]),
        "verify_push_seconds": of(lambda r: r["verify"]["push"]["seconds"]),
        "verify_pull_seconds": of(lambda r: r["verify"]["pull"]["seconds"]),
        "verify_scoped_seconds": of(lambda r: r["verify"]["scoped"]["seconds"]),
        "verify_scoped_key_seconds": of(lambda r: r["verify"]["scoped"]["key_seconds"]),
        "verify_product_argv_seconds": of(lambda r: r["verify"]["product_argv"]["seconds"]),
        # paired: what the restriction (view + rsync's daemon) adds to the same pull
        "scoped_minus_pull_seconds": of(lambda r: r["copy"]["scoped"]["seconds"] - r["copy"]["pull"]["seconds"]),
        "verify_scoped_minus_pull_seconds": of(lambda r: r["verify"]["scoped"]["seconds"] - r["verify"]["pull"]["seconds"]),
        "copy_step_minus_push_seconds": of(lambda r: r["hotspare"]["copy_step"] - r["copy"]["push"]["seconds"]),
    }
    step_names = [step["step"] for step in repetitions[0]["hotspare"]["steps"]]
    summary["step_seconds"] = {
        name: of(lambda r, name=name: next((s["seconds"] for s in r["hotspare"]["steps"] if s["step"] == name), None))
        for name in step_names
    }
    summary["pull_over_push"] = ratio(summary["pull_seconds"], summary["push_seconds"])
    summary["scoped_over_pull"] = ratio(summary["scoped_seconds"], summary["pull_seconds"])
    summary["copy_over_push"] = ratio(summary["copy_step_seconds"], summary["push_seconds"])
    summary["copy_over_scoped"] = ratio(summary["copy_step_seconds"], summary["scoped_seconds"])
    summary["verify_scoped_over_pull"] = ratio(summary["verify_scoped_seconds"], summary["verify_pull_seconds"])
    summary["verify_over_push"] = ratio(summary["verify_step_seconds"], summary["verify_push_seconds"])
    summary["verify_over_pull"] = ratio(summary["verify_step_seconds"], summary["verify_pull_seconds"])
    summary["flow_over_push"] = ratio(summary["flow_seconds"], summary["push_seconds"])
    summary["copy_over_push_and_sync"] = ratio(summary["copy_step_seconds"], summary["push_and_sync_seconds"])
    if summary["push_seconds"] is not None:
        summary["flow_target_seconds"] = round(FLOW_TARGET[0] * summary["push_seconds"] + FLOW_TARGET[1], 3)
    return summary


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _load(values) -> str:
    return "/".join(f"{value:.2f}" for value in values) if values else "-"


def _met(value: float | None, target: float) -> str:
    return "" if value is None else ("met" if value <= target else "MISSED")


def print_report(results: dict) -> None:
    scenarios = results["scenarios"]
    meta = results["meta"]
    print(
        f"\nReplication of {meta['files']} files x {meta['file_bytes']} bytes ({meta['total_bytes'] / 1e9:.2f} GB) between "
        f"prod-east and mirror-west; medians (full copy: {len(scenarios['full copy']['repetitions'])} runs, "
        f"others: {len(scenarios['1 % changed']['repetitions'])} runs), seconds"
    )
    print(
        "  push = the old design (prod-east runs rsync, unrestricted key); pull = mirror-west runs rsync, unrestricted key;\n"
        "  scoped = the same pull through a real transfer key (view + rsync's daemon); key = installing + removing it"
    )
    header = (
        "scenario",
        "bare push",
        "bare pull",
        "scoped pull",
        "key",
        "product argv",
        "copy step",
        "whole flow",
        "pull/push",
        "scoped/pull",
        "copy/push",
        "target",
        "",
    )
    rows = []
    for name, s in scenarios.items():
        has_target = name != "nothing changed"
        rows.append(
            (
                name,
                _s(s["push_seconds"]),
                _s(s["pull_seconds"]),
                _s(s["scoped_seconds"]),
                _s(s["scoped_key_seconds"]),
                _s(s["product_argv_seconds"]),
                _s(s["copy_step_seconds"]),
                _s(s["flow_seconds"]),
                _x(s["pull_over_push"]),
                _x(s["scoped_over_pull"]),
                _x(s["copy_over_push"]),
                f"<= {COPY_TARGET}x" if has_target else "-",
                _met(s["copy_over_push"], COPY_TARGET) if has_target else "",
            )
        )
    table(header, rows)

    print(
        f"\nWhole replicate flow against the bare push (target: flow <= {FLOW_TARGET[0]:g} x bare + {FLOW_TARGET[1]:g} s), seconds"
    )
    table(
        (
            "scenario",
            "bare push",
            "+ sync",
            "copy step",
            "copy/push",
            "copy/(push+sync)",
            "whole flow",
            "flow/push",
            "flow target",
            "",
        ),
        [
            (
                name,
                _s(s["push_seconds"]),
                _s(s.get("push_sync_seconds")),
                _s(s["copy_step_seconds"]),
                _x(s["copy_over_push"]),
                _x(s.get("copy_over_push_and_sync")),
                _s(s["flow_seconds"]),
                _x(s.get("flow_over_push")),
                _s(s.get("flow_target_seconds")),
                ""
                if s.get("flow_target_seconds") is None
                else ("met" if s["flow_seconds"] <= s["flow_target_seconds"] else "MISSED"),
            )
            for name, s in scenarios.items()
        ],
    )
    print(
        "  + sync = `sync -f` on the mirror right after the bare push (the copy step's snapshot commit writes its data to disk)"
    )
    print(
        f"  load average: {_load(meta.get('load_average_start'))} at the start, {_load(meta.get('load_average_end'))} at the end"
    )

    print("\nOverheads (median of per-repetition differences, seconds)")
    header = ("scenario", "scoped - pull (copy)", "scoped - pull (verify)", "key on+off", "copy step - push")
    table(
        header,
        [
            (
                name,
                f"{s['scoped_minus_pull_seconds']:+.2f} ({(s['scoped_over_pull'] - 1) * 100:+.0f} %)",
                f"{s['verify_scoped_minus_pull_seconds']:+.2f} ({(s['verify_scoped_over_pull'] - 1) * 100:+.0f} %)",
                _s(s["scoped_key_seconds"]),
                f"{s['copy_step_minus_push_seconds']:+.2f} ({(s['copy_over_push'] - 1) * 100:+.0f} %)",
            )
            for name, s in scenarios.items()
        ],
    )

    print("\nVerification (content, `rsync -anc --delete -i`) of hotspare's new copy on the same data")
    header = (
        "scenario",
        "bare push",
        "bare pull",
        "scoped pull",
        "product argv",
        "verify step",
        "scoped/pull",
        "step/pull",
        "step/push",
        "target",
        "",
        "sha256 both",
        "verify flow",
    )
    rows = []
    for name, s in scenarios.items():
        rows.append(
            (
                name,
                _s(s["verify_push_seconds"]),
                _s(s["verify_pull_seconds"]),
                _s(s["verify_scoped_seconds"]),
                _s(s["verify_product_argv_seconds"]),
                _s(s["verify_step_seconds"]),
                _x(s["verify_scoped_over_pull"]),
                _x(s["verify_over_pull"]),
                _x(s["verify_over_push"]),
                f"<= {VERIFY_TARGET}x",
                _met(s["verify_over_push"], VERIFY_TARGET),
                f"{s['sha256_both_sides']['seconds']:.2f}",
                f"{s['verify_flow_seconds']:.2f}",
            )
        )
    table(header, rows)

    print("\nSteps of the replicate flow (median seconds)")
    names = list(next(iter(scenarios.values()))["step_seconds"])
    table(
        ("scenario", *names, "whole flow"),
        [
            (name, *[f"{s['step_seconds'].get(step) or 0:.2f}" for step in names], f"{s['flow_seconds']:.2f}")
            for name, s in scenarios.items()
        ],
    )

    latency = results["latency"]
    print(
        f"\nSSH costs here: connect {latency['connect_ms']} ms, one remote command (`true`) {latency['command_ms']} ms; "
        f"root's shell ({latency['login_shell']}) starts in {latency['shell_with_bashrc_ms']} ms when sshd runs it "
        f"(~/.bashrc sourced), {latency['shell_without_bashrc_ms']} ms without"
    )
    one = latency["one_file_pull_ms"]
    print(
        f"One small file pulled by mirror-west (per connection: handshake, rsync start): bare {one['bare']} ms, "
        f"scoped {one['scoped']} ms (view + rsync's daemon: {one['scoped'] - one['bare']:+.1f} ms); "
        f"installing a transfer key {one['key_install']} ms, removing it {one['key_remove']} ms (from the orchestrator)"
    )
    print("\nWhere the time goes (last run of each scenario): per step, SSH connects / remote commands / rest in-process")
    for name, s in scenarios.items():
        breakdown = s["repetitions"][-1]["hotspare"]["breakdown"]
        print(
            f"  {name}: {breakdown['ssh_connects_orchestrator']} new SSH connection(s) from the orchestrator, "
            f"{breakdown['ssh_connects_host_to_host']} mirror->prod (one per rsync), {breakdown['remote_commands']} remote commands; "
            f"flow start {breakdown['before_run_record']:.2f} s, flow end {breakdown['after_run_record']:.2f} s, "
            f"between steps {breakdown['between_steps']:.2f} s"
        )
        for step in breakdown["steps"]:
            top = ", ".join(f"{label} x{c['count']} {c['seconds']:.2f}" for label, c in list(step["commands"].items())[:4])
            print(
                f"    {step['step']:<15} {step['seconds']:6.2f} s = connects {step['ssh_connects']} ({step['connect_seconds']:.2f}) "
                f"+ commands {step['remote_commands']} ({step['command_seconds']:.2f}) + other {step['other_seconds']:.2f}   [{top}]"
            )
    retries = [
        (name, index + 1, line)
        for name, s in scenarios.items()
        for index, r in enumerate(s["repetitions"])
        for line in r["hotspare"]["retries"]
    ]
    if retries:
        print("\nTask retries (a transient failure costs the retry delay, 2 s then 10 s, plus the re-run):")
        for name, number, line in retries:
            print(f"    {name} #{number}: {line['message'][:300]}")
    if "profile" in results:
        print(f"\nProfile of one no-change replication ({results['profile']['seconds']:.2f} s, {results['profile']['pstats']}):")
        for entry in results["profile"]["top"][:25]:
            print(f"    {entry['cumulative_seconds']:7.3f} s  {entry['calls']:6d} calls  {entry['function']}")
