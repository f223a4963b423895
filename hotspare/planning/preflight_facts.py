"""What a replication's preflight asks each host, in one round trip per host.

The preflight used to ask nine small questions one after another (each data path, the file
sizes, the clock; the copies folder, its filesystem, each copy on disk, free space), 0.3–0.6 s
of a replication that has nothing to copy. Each host now runs one short shell program and the
two run at once; the judging stays in ``planning/replication.py`` and ``planning/copy_backends.py``.

Pure: argument lists and parsers only.
"""

from __future__ import annotations

from dataclasses import dataclass

from hotspare.planning import snapshot_shipping as shipping
from hotspare.planning.copy_backends import STORE_FACT_KEYS, STORE_FACTS_SCRIPT, work_root
from hotspare.planning.replication import SourceTotals, service_root

# $@: the data paths. Missing ones are named; the number and total size of the files under the
# present ones follow (summed here: at 100,000 files, sending every size to the orchestrator
# and parsing it there cost more than the walk); the clock comes last (files modified after it
# changed during the copy). A walk that fails (an unreadable folder) fails the program: the
# shrink check never judges a partial count.
PRODUCTION_SCRIPT = (
    'for path do shift; if [ -d "$path" ]; then set -- "$@" "$path"; else printf "missing=%s\\n" "$path"; fi; done; '
    'if [ -n "${SHIP:-}" ] && [ "$#" -gt 0 ]; then sh -c "$SHIP" sh "$@"; fi; '
    'echo sizes; if [ "$#" -gt 0 ]; then { find "$@" -type f -printf "%s\\n" || echo failed; } | '
    'awk \'$0 == "failed" { failed = 1; next } { files++; bytes += $1 } '
    'END { if (failed) exit 3; printf "files=%.0f\\nbytes=%.0f\\n", files, bytes }\' || exit 3; fi; '
    'printf "clock=%s\\n" "$(date +%s.%N)"'
)

# $1 service root, $2 the store-facts program, $3 working subvolume, $4 verified copies newest
# first, $5 unverified copies newer than those (space-separated ids: hotspare's own names). A
# read-only snapshot left by a failed snapshot copy is never resumed by the hard-link back-end.
MIRROR_SCRIPT = (
    'root=$1; install -d -m 0700 "$root/copies" || exit 3; sh -c "$2" sh "$root/copies" "$3"; '
    'for id in $4; do if [ -d "$root/copies/$id/tree" ]; then echo "baseline=$id"; '
    'if command -v btrfs >/dev/null 2>&1 && btrfs subvolume show "$root/copies/$id" >/dev/null 2>&1; '
    'then echo baseline_snapshot=yes; fi; break; fi; echo "gone=$id"; done; '
    'for id in $5; do if [ -d "$root/copies/$id" ] && ! { command -v btrfs >/dev/null 2>&1 && '
    'btrfs subvolume show "$root/copies/$id" >/dev/null 2>&1; }; then echo "resumable=$id"; break; fi; done; '
    'if [ -n "${SHIP:-}" ]; then sh -c "$SHIP" sh "$root/received"; fi; '
    'echo df; df -B1 --output=size,avail "$root"'
)


@dataclass(frozen=True)
class ProductionFacts:
    missing_paths: tuple[str, ...]
    totals: SourceTotals
    clock: float  # production's clock (epoch seconds) after the listing
    shipping: shipping.ShippingFacts = shipping.ShippingFacts()  # data paths as subvolumes, snapshots


@dataclass(frozen=True)
class MirrorFacts:
    store_output: str  # ``copy_backends.parse_store_facts`` reads it
    baseline: str | None  # the newest verified copy still on disk
    baseline_is_snapshot: bool
    gone: tuple[str, ...]  # verified copies newer than the baseline that are no longer on disk
    resumable: str | None  # the newest unverified copy that left files behind
    available_bytes: int
    filesystem_bytes: int = 0  # the size of the store's filesystem (a service's default bound is a share of it)
    shipping: shipping.ShippingFacts = shipping.ShippingFacts()  # the received area and its subvolumes


def production_facts_argv(data_paths: list[str]) -> list[str]:
    return ["env", f"SHIP={shipping.PRODUCTION_FACTS_SCRIPT}", "sh", "-c", PRODUCTION_SCRIPT, "sh", *data_paths]


def parse_production_facts(output: str) -> ProductionFacts:
    head, _, rest = output.partition("sizes\n")
    sizes, _, clock = rest.rpartition("clock=")
    missing = tuple(line.split("=", 1)[1] for line in head.splitlines() if line.startswith("missing="))
    return ProductionFacts(missing, parse_totals(sizes), float(clock.strip()), shipping.parse_production_facts(head))


def parse_totals(text: str) -> SourceTotals:
    """The ``files=`` and ``bytes=`` lines of the production program (none: no present path)."""
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return SourceTotals(files=int(values.get("files", "0") or 0), bytes=int(values.get("bytes", "0") or 0))


def mirror_facts_argv(service: str, verified: list[str], unverified: list[str]) -> list[str]:
    return [
        "env",
        f"SHIP={shipping.MIRROR_FACTS_SCRIPT}",
        "sh",
        "-c",
        MIRROR_SCRIPT,
        "sh",
        service_root(service),
        STORE_FACTS_SCRIPT,
        work_root(service),
        " ".join(verified),
        " ".join(unverified),
    ]


def parse_mirror_facts(output: str) -> MirrorFacts:
    facts, _, df = output.partition("df\n")
    lines = facts.splitlines()
    values = dict(line.split("=", 1) for line in lines if "=" in line)
    size_line = [line for line in df.splitlines() if line.strip()][-1]
    return MirrorFacts(
        store_output="\n".join(line for line in lines if line.split("=", 1)[0] in STORE_FACT_KEYS),
        baseline=values.get("baseline"),
        baseline_is_snapshot=values.get("baseline_snapshot") == "yes",
        gone=tuple(line.split("=", 1)[1] for line in lines if line.startswith("gone=")),
        resumable=values.get("resumable"),
        available_bytes=int(size_line.split()[1]),
        filesystem_bytes=int(size_line.split()[0]),
        shipping=shipping.parse_mirror_facts(facts),
    )
