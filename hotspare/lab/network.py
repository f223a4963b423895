"""The lab network: a bridge in the root namespace, one namespace + veth pair per host.

`make_*` functions are pure and return `ip -batch` lines; `apply_*` run them. Teardown
works from the slot layout alone (names are deterministic), so it also cleans up after a
crash that lost state.json.
"""

from __future__ import annotations

import logging

from hotspare.lab.errors import LabError
from hotspare.lab.processes import run
from hotspare.lab.topology import BLACKHOLE_METRIC, COVER_NETWORK, HOSTS, HostSpec, SlotLayout

log = logging.getLogger("hotspare.lab")


def make_root_setup(layout: SlotLayout) -> list[str]:
    """Root-namespace lines: bridge with .1, safety blackhole, one namespace + veth per host.

    The covering blackhole is shared by all slots (`replace` adds it or keeps it); the
    bridge's more specific /24 wins while it exists. Namespaces get no default route.
    """
    lines = [
        f"route replace blackhole {COVER_NETWORK} metric {BLACKHOLE_METRIC}",
        f"link add {layout.bridge} type bridge",
        f"link set {layout.bridge} up",
        f"address add {layout.gateway}/24 dev {layout.bridge}",
    ]
    for host in HOSTS:
        netns = layout.netns(host)
        lines += [
            f"netns add {netns}",
            f"link add {layout.veth(host)} type veth peer name eth0 netns {netns}",
            f"link set {layout.veth(host)} master {layout.bridge} up",
        ]
    return lines


def make_namespace_setup(layout: SlotLayout, host: HostSpec) -> list[str]:
    """Lines run inside a host's namespace: its address on eth0, loopback up."""
    return [
        f"address add {layout.address(host)}/24 dev eth0",
        "link set lo up",
        "link set eth0 up",
    ]


def make_fail(layout: SlotLayout) -> list[str]:
    """Lines inside a host's namespace that make it silently drop all lab traffic.

    Two /25 blackholes beat the connected /24, so the host's replies vanish: clients see
    timeouts, exactly like a dead uplink (a down link would answer 'no route' quickly).
    """
    return [f"route replace blackhole {half}" for half in layout.halves]


def make_heal(layout: SlotLayout) -> list[str]:
    """Lines that remove the fail blackholes."""
    return [f"route del blackhole {half}" for half in layout.halves]


def apply_batch(lines: list[str], what: str, netns: str | None = None) -> None:
    """Run lines with one `ip -batch` call, in the root namespace or inside netns."""
    argv = ["ip"] + (["-n", netns] if netns else []) + ["-batch", "-"]
    run(argv, what, input_text="\n".join(lines) + "\n")


def setup(layout: SlotLayout) -> None:
    """Create the slot's bridge, routes, namespaces and veth pairs."""
    apply_batch(make_root_setup(layout), f"creating lab network {layout.network}")
    for host in HOSTS:
        apply_batch(make_namespace_setup(layout, host), f"configuring {host.name}", layout.netns(host))


def fail(layout: SlotLayout, host: HostSpec) -> None:
    """Make a host unreachable (timeouts) without touching its processes."""
    apply_batch(make_fail(layout), f"failing {host.name}", layout.netns(host))


def heal(layout: SlotLayout, host: HostSpec) -> bool:
    """Undo `fail`; returns whether the host was failed (healing a healthy host is a no-op)."""
    removed = False
    for line in make_heal(layout):
        result = run(["ip", "-n", layout.netns(host)] + line.split(), f"healing {host.name}", check=False)
        if result.returncode == 0:
            removed = True
        elif "No such process" not in result.stderr:
            raise LabError(f"healing {host.name}: {result.stderr.strip()}")
    return removed


def is_failed(layout: SlotLayout, host: HostSpec) -> bool:
    """True when the host's namespace holds the fail blackholes."""
    result = run(
        ["ip", "-n", layout.netns(host), "route", "show", "type", "blackhole"], f"reading routes of {host.name}", check=False
    )
    return result.returncode == 0 and layout.halves[0] in result.stdout


def existing_namespaces(layout: SlotLayout) -> list[str]:
    """The slot's namespaces that exist right now."""
    result = run(["ip", "netns", "list"], "listing network namespaces")
    present = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    return [layout.netns(host) for host in HOSTS if layout.netns(host) in present]


def teardown(layout: SlotLayout, last_lab: bool) -> list[str]:
    """Remove veths, namespaces and bridge of the slot; absent parts are fine.

    The covering blackhole goes only with the machine's last lab (`last_lab`). Veths go
    before namespaces because namespace deletion is asynchronous. Callers stop the
    processes inside the namespaces first (they would keep them alive).
    """
    done = []
    links = _existing_links()
    for host in HOSTS:
        if layout.veth(host) in links:
            run(["ip", "link", "del", layout.veth(host)], f"deleting {layout.veth(host)}")
            done.append(f"deleted veth {layout.veth(host)}")
    for netns in existing_namespaces(layout):
        run(["ip", "netns", "del", netns], f"deleting namespace {netns}")
        done.append(f"deleted namespace {netns}")
    if layout.bridge in links:
        run(["ip", "link", "del", layout.bridge], f"deleting bridge {layout.bridge}")
        done.append(f"deleted bridge {layout.bridge}")
    # Labs of earlier versions kept a blackhole per slot; remove it if one is left.
    slot_route = ["route", "del", "blackhole", layout.network, "metric", str(BLACKHOLE_METRIC)]
    if run(["ip"] + slot_route, "deleting slot blackhole route", check=False).returncode == 0:
        done.append(f"deleted blackhole route {layout.network}")
    cover_route = ["route", "del", "blackhole", COVER_NETWORK, "metric", str(BLACKHOLE_METRIC)]
    if last_lab and run(["ip"] + cover_route, "deleting blackhole route", check=False).returncode == 0:
        done.append(f"deleted blackhole route {COVER_NETWORK} (no lab left on this machine)")
    return done


def _existing_links() -> set[str]:
    """Names of the root namespace's network interfaces."""
    result = run(["ip", "-o", "link", "show"], "listing interfaces")
    return {line.split(":")[1].strip().split("@")[0] for line in result.stdout.splitlines()}
