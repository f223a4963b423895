"""What fencing does when a production's app stop "succeeded" but the app still answers.

The service's ``deactivate`` commands run as the service's own account, so the customer's code
decides their exit status: an app that removed its own PID file makes ``ctl stop`` say "not
running" and exit 0 while it keeps serving. Fencing therefore believes the app's health URL, not
the exit status. Still answering, the service's processes are killed by their accounts (the
kernel's notion of who runs them, not the app's); still answering after that, the server is
powered off through its BMC, unless other services run there too: a hostile app must never make
hotspare power off a server its neighbours depend on. Then the failover goes on unfenced and
says why.
"""

from __future__ import annotations

from dataclasses import dataclass

from hotspare.fleet.schema import Fleet, Service

# Kill every process whose UID is one of the service's accounts (named users when declared,
# else its UID range) and that lives in this server's network namespace, where its app listens: a
# process in a container of its own is not reached (the fence then goes on to the BMC or says
# unfenced), and on a machine whose servers share one kernel no other server's process is
# touched. One ``ps`` lists the candidates by UID; only theirs are looked at; prints how many it
# signalled.
KILL_BY_UID_PROGRAM = r"""
lo=$1 hi=$2; shift 2
own=$(readlink /proc/$$/ns/net) || exit 1
killed=0
for pid in $(ps -e -o pid= -o uid= | awk -v lo="$lo" -v hi="$hi" -v wanted="$*" '
    BEGIN { count = split(wanted, names, " "); for (i = 1; i <= count; i++) want[names[i]] = 1 }
    (count > 0 && ($2 in want)) || (count == 0 && $2 >= lo + 0 && $2 <= hi + 0) { print $1 }'); do
  [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" = "$own" ] || continue
  if kill -KILL "$pid" 2>/dev/null; then killed=$((killed + 1)); fi
done
echo "$killed"
"""


@dataclass(frozen=True)
class ProcessKill:
    """The argument list that kills the service's processes on its server, and what it covers."""

    argv: list[str]
    covers: str


def kill_service_processes(spec: Service, uids: dict[str, int] | None = None) -> ProcessKill | None:
    """Kill the processes of the service's accounts. ``uids``: the declared users' UIDs on that
    server (name -> UID), read from its passwd; None when the service declares no users (its UID
    range is used). None when its app runs as root: no account-scoped kill can reach it."""
    if spec.run_as == "root":
        return None
    if spec.accounts.users:
        found = sorted({uid for name, uid in (uids or {}).items() if name in spec.accounts.users and uid != 0})
        if not found:
            return None
        return ProcessKill(
            ["sh", "-c", KILL_BY_UID_PROGRAM, "sh", "0", "0", *map(str, found)],
            f"the processes of {', '.join(spec.accounts.users)}",
        )
    low, high = max(1, spec.accounts.uid_min), spec.accounts.uid_max
    return ProcessKill(["sh", "-c", KILL_BY_UID_PROGRAM, "sh", str(low), str(high)], f"the processes of UIDs {low}-{high}")


def neighbours(fleet: Fleet, service: str, server: str) -> list[str]:
    """Other services that run on ``server`` or keep their copies there: powering it off would
    take them down or unprotect them."""
    return sorted(other.name for other in fleet.services if other.name != service and server in (other.production, other.mirror))


def parse_uids(passwd: str, users: list[str]) -> dict[str, int]:
    """name -> UID for ``users`` found in a passwd text (untrusted: malformed lines are skipped)."""
    found = {}
    for line in passwd.splitlines()[:100_000]:
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] in users and fields[2].isdigit():
            found[fields[0]] = int(fields[2])
    return found
