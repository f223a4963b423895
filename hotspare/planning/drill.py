"""Pure planning of a failover drill: bring a service up from its newest verified copy inside a
bubble on the mirror, without touching production, the mirror's live state, DNS or replication.

No network, no Prefect, no clock: facts in, a ``DrillPlan`` and argument lists out.

The bubble, on the drill host (the service's mirror), all named from the service and drill id:

- a **network namespace** ``hsdrill-<service>-<id>`` holding both ends of a veth pair
  (``drill0``/``drill1``) and ``lo``; ``drill0`` carries the service's *production address*
  (/32), so the app answers at the address users know, with no route to the real one: the
  namespace has no other interface and no default route;
- a **holder**: ``sleep`` as PID 1 of a new PID, mount and IPC namespace inside that network
  namespace. Every later step enters it with ``nsenter``; killing it kills everything the drill
  started (the kernel ends a PID namespace with its first process), and the mount namespace,
  with every overlay in it, and the IPC namespace (System V IPC objects) go with the last of them;
- a **workspace**: an overlay whose lower layer is the read-only copy and whose upper and work
  folders are in the scratch. Overlays work on ext4 and btrfs mirrors alike;
- the **scratch** itself is a size-limited tmpfs mounted over the scratch folder in the holder's
  mount namespace only, so every writable layer of the drill lives in memory the kernel frees
  with the bubble, and the mirror's disks receive no write from the drill;
- a **view** of the whole filesystem for the service's commands (``hotspare/planning/containment.py``):
  overlays of the mirror's filesystems, fresh folders where other people's things are, the
  service's paths bound from the workspace, every other service's paths masked. The commands
  run in it as the service's user (``run_as``), in user and mount namespaces of their own.

A **manifest** (one JSON line) is written on the host before anything is created and removed
only after the cleanup is proven, so a drill killed midway is cleaned up by the next one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime

from hotspare.planning import containment
from hotspare.planning.accounts import ACCOUNT_FILES
from hotspare.planning.containment import UNSAFE_PATH_CHARACTERS, Identity
from hotspare.planning.replication import COPIES_ROOT, Decision, copy_root, copy_tree, source_paths

DRILL_ROOTS = ("/var/lib/hotspare/drills", "/srv/hotspare/drills", "/opt/hotspare/drills")
NETNS_PREFIX = "hsdrill-"
INSIDE, OUTSIDE = "drill0", "drill1"
# Top-level folders a bubble must never lay an overlay over.
FORBIDDEN_TOPS = ("/proc", "/sys", "/dev", "/run")

# Fixed scripts, run as ``sh -c SCRIPT sh ARGS…`` (arguments, never text built from values).
START_HOLDER = (
    'ip netns exec "$1" unshare --mount --propagation private --pid --ipc --fork --mount-proc --kill-child '
    "-- sleep infinity </dev/null >/dev/null 2>&1 &\n"
    "parent=$!; tries=0\n"
    'while [ "$tries" -lt 200 ]; do\n'
    '  child=$(cat "/proc/$parent/task/$parent/children" 2>/dev/null)\n'
    '  if [ -n "$child" ]; then echo "$child"; exit 0; fi\n'
    "  sleep 0.05; tries=$((tries + 1))\n"
    "done\n"
    'echo "the bubble\'s holder process did not start" >&2; exit 1'
)
WRITE_MANIFEST = 'mkdir -p -- "$(dirname -- "$1")" && cat > "$1.tmp" && mv -f -- "$1.tmp" "$1"'
KILL_BUBBLE = (
    'pids=$(ip netns pids "$1" 2>/dev/null)\n'
    'if [ -n "$pids" ]; then kill -KILL $pids 2>/dev/null; fi\n'
    'ip netns pids "$1" 2>/dev/null | wc -l'
)
# Prints one line per thing left behind; nothing printed means the cleanup is proven.
PROVE_CLEAN = (
    '[ -e "/run/netns/$1" ] && echo "namespace $1 still exists"\n'
    'for pid in $(ip netns pids "$1" 2>/dev/null); do echo "process $pid still runs in $1"; done\n'
    'grep -l -s -F -e "$3" /proc/[0-9]*/mountinfo | sed "s|^|a mount of the drill is still in |"\n'
    '[ -e "$2" ] && echo "scratch folder $2 still exists"\n'
    "exit 0"
)
LIST_MANIFESTS = (
    'for root in "$@"; do for file in "$root"/*.json; do\n'
    '  [ -f "$file" ] && { tr -d "\\n" < "$file"; echo; }\n'
    "done; done; exit 0"
)


@dataclass(frozen=True)
class DrillFacts:
    """What the planner needs: the service as loaded, where it stands, its newest verified copy."""

    service: str
    spec: dict  # the fleet entry (as stored in the inventory)
    state: str
    mirror: str | None
    production_address: str
    host_address: str | None
    copy_id: str | None
    copy_started: datetime | None
    mirror_passwd: str = ""  # the mirror's own /etc/passwd (run_as may name an account of the mirror)
    other_paths: tuple[str, ...] = ()  # every other service's declared paths: masked in the view


@dataclass(frozen=True)
class DrillPlan:
    """Everything a drill creates and runs, named once; also the manifest's content."""

    drill_id: str
    service: str
    host: str
    host_address: str
    netns: str
    scratch: str
    manifest: str
    copy_id: str
    copy_root: str
    tree: str
    production_address: str
    health_url: str | None
    health_host: str | None
    canary_users: tuple[str, ...]
    activate: tuple[tuple[str, ...], ...]
    paths: tuple[str, ...]
    tops: tuple[str, ...]
    method: str = "overlay"
    rpo_seconds: float | None = None
    warnings: tuple[str, ...] = field(default=())
    identity: Identity | None = None
    masks: tuple[str, ...] = ()

    @property
    def tag(self) -> str:
        """The overlays' source name: greppable in any mount table."""
        return f"{NETNS_PREFIX}{self.drill_id}"

    @property
    def workspace(self) -> str:
        return f"{self.scratch}/merged"

    @property
    def view(self) -> str:
        """The root the service's commands see."""
        return f"{self.scratch}/view"

    def manifest_text(self) -> str:
        return (
            json.dumps(
                {
                    "drill_id": self.drill_id,
                    "service": self.service,
                    "host": self.host,
                    "host_address": self.host_address,
                    "netns": self.netns,
                    "scratch": self.scratch,
                    "tag": self.tag,
                    "method": self.method,
                    "copy_id": self.copy_id,
                },
                sort_keys=True,
            )
            + "\n"
        )


def drill_id_for(moment: datetime, suffix: str) -> str:
    """``20261130T133000Z-3f9a``: sorts by time; the suffix tells apart drills of one second."""
    return f"{moment.strftime('%Y%m%dT%H%M%SZ')}-{suffix}".lower()


def netns_name(service: str, drill_id: str) -> str:
    return f"{NETNS_PREFIX}{service}-{drill_id}"


def top_folders(paths: list[str]) -> tuple[str, ...]:
    """The distinct top-level folders of ``paths`` (``/srv/app1/data`` -> ``/srv``)."""
    return tuple(sorted({"/" + path.strip("/").split("/")[0] for path in paths}))


def scratch_root(tops: tuple[str, ...]) -> str | None:
    """The first drill root outside every top overlay (an upper layer inside its own lower
    layer is undefined behaviour in overlayfs)."""
    for root in DRILL_ROOTS:
        if not any(root == top or root.startswith(top + "/") for top in tops):
            return root
    return None


def canary_users(spec: dict, passwd_text: str) -> tuple[str, ...]:
    """The accounts a canary login tries: the declared ones, else the copy's accounts in the
    service's UID range (from the copy's /etc/passwd)."""
    accounts = spec.get("accounts") or {}
    if accounts.get("users"):
        return tuple(accounts["users"])
    low, high = accounts.get("uid_min", 1000), accounts.get("uid_max", 59999)
    names = []
    for line in passwd_text.splitlines():
        fields = line.split(":")
        if len(fields) == 7 and fields[2].isdigit() and low <= int(fields[2]) <= high:
            names.append(fields[0])
    return tuple(names)


def plan_drill(facts: DrillFacts, drill_id: str, now: datetime, passwd_text: str = "") -> DrillPlan | Decision:
    """The drill of ``facts.service`` on its mirror, or a no-go ``Decision`` saying why not."""
    service = facts.service
    if facts.state != "protected" or not facts.mirror or not facts.host_address:
        return Decision(
            False,
            f"no drill of {service}: it is {facts.state} (a drill rehearses a failover to the "
            f"mirror, so the service must be protected by one); nothing was created",
        )
    if not facts.copy_id:
        return Decision(
            False,
            f"no drill of {service}: no verified copy on {facts.mirror}; run `hotspare replicate "
            f"{service}` first; nothing was created",
        )
    paths = source_paths(facts.spec)
    tops = top_folders(paths)
    problems = [f"{path!r} holds a character a mount option cannot carry" for path in paths if UNSAFE_PATH_CHARACTERS & set(path)]
    problems += [f"a drill cannot lay an overlay over {top}" for top in tops if top in FORBIDDEN_TOPS or top == "/"]
    root = scratch_root(tops)
    if root is None:
        problems.append(f"every drill folder ({', '.join(DRILL_ROOTS)}) lies under a folder the service uses")
    identity = containment.choose_identity(service, facts.spec, passwd_text, facts.mirror_passwd)
    if isinstance(identity, str):
        problems.append(identity)
    if problems or isinstance(identity, str):
        return Decision(False, f"no drill of {service}: " + "; ".join(problems) + ". Nothing was created.")
    warnings = []
    users = canary_users(facts.spec, passwd_text)
    if not users:
        warnings.append("the copy holds no account of the service: no canary login")
    health_url = facts.spec.get("health_url")
    if not health_url:
        warnings.append("the service has no health_url: the drill can only prove the app starts")
    rpo = (now - facts.copy_started).total_seconds() if facts.copy_started else None
    return DrillPlan(
        drill_id=drill_id,
        service=service,
        host=facts.mirror,
        host_address=facts.host_address,
        netns=netns_name(service, drill_id),
        scratch=f"{root}/{drill_id}",
        manifest=f"{root}/{drill_id}.json",
        copy_id=facts.copy_id,
        copy_root=copy_root(service, facts.copy_id),
        tree=copy_tree(service, facts.copy_id),
        production_address=facts.production_address,
        health_url=health_url,
        health_host=_url_host(health_url) if health_url else None,
        canary_users=users[:1],
        activate=tuple(tuple(argv) for argv in facts.spec.get("activate") or []),
        paths=tuple(paths),
        tops=tops,
        rpo_seconds=round(rpo, 3) if rpo is not None else None,
        warnings=tuple(warnings),
        identity=identity,
        masks=containment.mask_paths(
            tuple(paths), tuple(p for p in facts.other_paths if p not in ACCOUNT_FILES), (COPIES_ROOT, *DRILL_ROOTS)
        ),
    )


def _url_host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).hostname or ""


def health_url_in_bubble(plan: DrillPlan) -> str:
    """The health URL aimed at the production address inside the bubble (no DNS in there)."""
    from urllib.parse import urlsplit

    parts = urlsplit(plan.health_url)
    port = f":{parts.port}" if parts.port else ""
    return parts._replace(netloc=f"{plan.production_address}{port}").geturl()


# ---------------------------------------------------------------------------------------
# Argument lists, in the order the drill runs them.


def enter(plan_holder_pid: int, *namespaces: str) -> list[str]:
    """``nsenter`` into the holder's namespaces (``net``, ``mount``, ``pid``)."""
    flags = {"net": "--net", "mount": "--mount", "pid": "--pid", "ipc": "--ipc"}
    return ["nsenter", "--target", str(plan_holder_pid), *[flags[name] for name in namespaces], "--"]


def manifest_argv(plan: DrillPlan) -> list[str]:
    """Write the manifest (its text on stdin) before anything else exists."""
    return ["sh", "-c", WRITE_MANIFEST, "sh", plan.manifest]


def bubble_argvs(plan: DrillPlan) -> list[list[str]]:
    """The network namespace: both veth ends inside it, the production address, lo up."""
    netns = ["ip", "-n", plan.netns]
    return [
        ["ip", "netns", "add", plan.netns],
        [*netns, "link", "add", INSIDE, "type", "veth", "peer", "name", OUTSIDE],
        [*netns, "address", "add", f"{plan.production_address}/32", "dev", INSIDE],
        [*netns, "link", "set", "lo", "up"],
        [*netns, "link", "set", INSIDE, "up"],
        [*netns, "link", "set", OUTSIDE, "up"],
    ]


def scratch_argv(plan: DrillPlan) -> list[str]:
    """The scratch folder on the host: only a mount point (its tmpfs exists in the bubble only)."""
    return ["mkdir", "-p", "-m", "0700", "--", plan.scratch]


def holder_argv(plan: DrillPlan) -> list[str]:
    """Start the holder; prints its PID (as the host sees it)."""
    return ["sh", "-c", START_HOLDER, "sh", plan.netns]


def mountinfo_argv(holder: int) -> list[str]:
    """The holder's mount table (the view is built from it, then audited with it)."""
    return ["cat", "--", f"/proc/{holder}/mountinfo"]


def scratch_tmpfs_argvs(plan: DrillPlan, holder: int) -> list[list[str]]:
    """The drill's memory-only scratch, in the holder's mount namespace."""
    options = f"size={containment.SCRATCH_SIZE},mode=0700,nosuid,nodev"
    return [
        [*enter(holder, "mount"), "mount", "-t", "tmpfs", "-o", options, plan.tag, plan.scratch],
        [*enter(holder, "mount"), "mkdir", "-p", "--", *[f"{plan.scratch}/{name}" for name in ("upper", "work", "merged")]],
    ]


def workspace_argvs(plan: DrillPlan, holder: int) -> list[list[str]]:
    """The writable copy: an overlay on the read-only copy (whatever the mirror's filesystem)."""
    options = f"lowerdir={plan.tree},upperdir={plan.scratch}/upper,workdir={plan.scratch}/work,nosuid,nodev"
    return [[*enter(holder, "mount"), "mount", "-t", "overlay", plan.tag, "-o", options, f"{plan.scratch}/merged"]]


def view_argvs(plan: DrillPlan, holder: int, mountinfo: str) -> list[list[str]]:
    """The whole-filesystem view, the service's own paths in it, then the masks."""
    mount, mount_pid = enter(holder, "mount"), enter(holder, "mount", "pid")
    assert plan.identity is not None
    private = (*DRILL_ROOTS, plan.scratch)
    return [
        *containment.view_argvs(
            mount, mount_pid, plan.scratch, plan.tag, containment.parse_mountinfo(mountinfo), private, plan.identity
        ),
        *containment.bind_own_argvs(mount, plan.workspace, plan.view, plan.paths),
        *containment.mask_argvs(mount, plan.view, plan.tag, plan.masks),
    ]


def audit_view(plan: DrillPlan, mountinfo: str) -> list[str]:
    """What in the view could reach the mirror (empty: nothing)."""
    return containment.audit_view(containment.parse_mountinfo(mountinfo), plan.view, plan.tag)


def activate_argvs(plan: DrillPlan, holder: int) -> list[list[str]]:
    """The service's own ``activate`` commands, inside the bubble, in the view, as its user."""
    assert plan.identity is not None
    return [
        containment.contained_argv(enter(holder, "net", "mount", "pid", "ipc"), plan.view, plan.identity, argv)
        for argv in plan.activate
    ]


def health_argv(plan: DrillPlan, holder: int, timeout_seconds: float = 2.0) -> list[str]:
    """One health probe from inside the bubble; prints the HTTP status (000: no answer)."""
    return [
        *enter(holder, "net"),
        "curl",
        "--silent",
        "--output",
        "/dev/null",
        "--write-out",
        "%{http_code}",
        "--max-time",
        f"{timeout_seconds:g}",
        "--noproxy",
        "*",
        "--header",
        f"Host: {plan.health_host}",
        health_url_in_bubble(plan),
    ]


def canary_argv(plan: DrillPlan, holder: int, user: str) -> list[str]:
    """A login as the service's account, with the copy's account files (bound in the view)."""
    return [*enter(holder, "mount", "pid"), "chroot", plan.view, "su", "-s", "/bin/sh", "-c", "true", user]


def route_argv(plan: DrillPlan, address: str) -> list[str]:
    return ["ip", "-n", plan.netns, "route", "get", address]


def kill_argv(netns: str) -> list[str]:
    """SIGKILL every process in the bubble; prints how many were still listed afterwards."""
    return ["sh", "-c", KILL_BUBBLE, "sh", netns]


def teardown_argvs(netns: str, scratch: str) -> list[list[str]]:
    """After the processes are gone: the namespace (and its veth pair), then the scratch folder."""
    return [["ip", "netns", "delete", netns], ["rm", "-rf", "--one-file-system", "--", scratch]]


def prove_argv(netns: str, scratch: str, tag: str) -> list[str]:
    return ["sh", "-c", PROVE_CLEAN, "sh", netns, scratch, tag]


def list_manifests_argv() -> list[str]:
    """Every drill manifest on the host, one JSON object per line (the glob expands remotely)."""
    return ["sh", "-c", LIST_MANIFESTS, "sh", *DRILL_ROOTS]


def parse_manifests(text: str) -> list[dict]:
    """Manifests from ``list_manifests_argv`` output; unreadable lines are skipped."""
    found = []
    for line in text.splitlines():
        try:
            manifest = json.loads(line)
        except ValueError:
            continue
        if isinstance(manifest, dict) and {"drill_id", "netns", "scratch", "tag"} <= manifest.keys():
            found.append(manifest)
    return found


def stale_manifests(manifests: list[dict], service: str | None, host: str, host_address: str) -> list[dict]:
    """Manifests this host's drills left (of one service, or all): checked against the host's name
    and address, so machines that share a folder (the lab) never clean each other's drills."""
    return [
        manifest
        for manifest in manifests
        if manifest.get("host") == host
        and manifest.get("host_address") == host_address
        and (service is None or manifest.get("service") == service)
        and _safe_manifest(manifest)
    ]


def _safe_manifest(manifest: dict) -> bool:
    """Only names a drill could have made: the cleanup deletes what a manifest names."""
    netns, scratch, drill_id = str(manifest["netns"]), str(manifest["scratch"]), str(manifest["drill_id"])
    return (
        netns.startswith(NETNS_PREFIX)
        and "/" not in netns
        and netns.endswith(drill_id)
        and any(scratch == f"{root}/{drill_id}" for root in DRILL_ROOTS)
        and ".." not in drill_id
        and "/" not in drill_id
        and manifest["tag"] == f"{NETNS_PREFIX}{drill_id}"
    )


def manifest_path_of(manifest: dict) -> str:
    return manifest["scratch"] + ".json"


def parse_leftovers(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.strip()]


def judge_health(status_codes: list[str]) -> Decision:
    last = status_codes[-1] if status_codes else "none"
    if last.isdigit() and 200 <= int(last) < 300:
        return Decision(True, f"healthy: HTTP {last} after {len(status_codes)} probe(s)")
    return Decision(
        False,
        f"not healthy: last answer {'no answer' if last in ('000', 'none') else 'HTTP ' + last} "
        f"after {len(status_codes)} probe(s)",
    )


def plan_summary(plan: DrillPlan) -> dict:
    return {key: value for key, value in asdict(plan).items() if key not in ("activate",)}
