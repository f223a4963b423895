"""Fencing the old production before users move: its app stopped over SSH, or its power off.

Like Pacemaker's fencing: a production that answers has its app stopped with the service's
``deactivate`` commands (graceful, the server stays up for reprotect); one whose SSH port does
not accept a TCP connection within ``TCP_PROBE_SECONDS`` (a live server's kernel answers in one
round trip, whatever its load; health from several sites has usually declared it dead already),
or whose app stop fails, is powered off through its BMC (IPMI ``chassis power off`` or Redfish
``ComputerSystem.Reset`` ForceOff, credentials from its ``BmcCredentials`` block) and the power
state is read back. Neither possible (no BMC, BMC unreachable, ``bmc.fence: false``): the
failover goes on **unfenced**, said in the result, never stuck. The whole fence is bounded by
``seconds``. The emergency failover runs it alongside the activation; DNS waits for its outcome.

The deactivate commands run as the customer's account, so their exit status is not believed: the
app's health URL must stop answering, else the processes of the service's accounts are killed,
and if it still answers the server is powered off, unless other services run there
(``planning/fencing.py``).
"""

from __future__ import annotations

import time

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from hotspare import access
from hotspare.adapters import ipmi, redfish
from hotspare.adapters.errors import HotspareError, TransientError
from hotspare.fleet import Fleet
from hotspare.planning import fencing as fencing_plan
from hotspare.planning.containment import as_service_user
from hotspare.probes import reachability
from tasks.retry import retrying

TCP_PROBE_SECONDS = 0.5  # a TCP connect is one round trip: far below this between facilities
SSH_CONNECT_SECONDS = 3.0  # the SSH handshake of a server that accepted the connection
POWER_CHECK_SECONDS = 3.0
STOP_CONFIRM_SECONDS = 2.0  # an app given its stop command has this long to stop answering


@task(name="fence production", cache_policy=NO_CACHE)
def fence(service: str, server: str, seconds: float = 8.0, power_off: bool = True) -> dict:
    """Make sure ``server`` serves ``service`` to nobody; bounded; unfenced is an answer, not a hang.

    ``power_off=False`` (a former production about to become the mirror): only the app stop.

    Returns ``fenced`` (bool), ``method`` (``app stopped`` / ``powered off`` / ``unfenced``),
    ``detail`` (what happened, each attempt) and ``seconds``."""
    logger = get_run_logger()
    started = time.monotonic()
    deadline = started + seconds
    fleet = access.loaded_fleet()
    attempts = []
    try:
        spec = fleet.server(server)
        if not reachability({server: (spec.address, spec.ssh_port)}, TCP_PROBE_SECONDS)[server]:
            raise TransientError(f"{server}:{spec.ssh_port} did not accept a connection within {TCP_PROBE_SECONDS:g} s")
        # once more on a fresh connection: a pooled one from before an outage fails its first use
        count = retrying(_stop_app, f"stopping {service}'s app on {server}", retries=1, delays=0)(
            fleet, service, server, deadline
        )
        stopped = _confirm_stopped(fleet, service, server, count, deadline)
        if stopped is not None:
            logger.info("fenced %s: %s", server, stopped["detail"])
            return {**stopped, "seconds": round(time.monotonic() - started, 3)}
        attempts.append(
            f"{service}'s app on {server} still answers after its deactivate commands and after every "
            "process of its accounts was killed"
        )
        others = fencing_plan.neighbours(fleet, service, server)
        if others:  # a hostile app must never make hotspare power off its neighbours' server
            power_off = False
            attempts.append(f"not powering {server} off: {', '.join(others)} run(s) or keep copies there too")
    except HotspareError as error:
        attempts.append(f"app not stopped over SSH: {error}")
    if not power_off:
        logger.warning("could not stop %s's app on %s (%s); not powering it off", service, server, "; ".join(attempts))
        return {
            "fenced": False,
            "method": "unfenced",
            "detail": "; ".join(attempts),
            "seconds": round(time.monotonic() - started, 3),
        }
    try:
        detail = _power_off(fleet, server, deadline)
        logger.info("fenced %s: %s (its app could not be stopped over SSH)", server, detail)
        return {
            "fenced": True,
            "method": "powered off",
            "detail": "; ".join([*attempts, detail]),
            "seconds": round(time.monotonic() - started, 3),
        }
    except HotspareError as error:
        attempts.append(str(error))
    detail = "; ".join(attempts)
    logger.warning("could not fence %s (%s); going on UNFENCED: it may still serve stale data if it comes back", server, detail)
    return {"fenced": False, "method": "unfenced", "detail": detail, "seconds": round(time.monotonic() - started, 3)}


def _stop_app(fleet: Fleet, service: str, server: str, deadline: float) -> int:
    """Run the service's deactivate commands on ``server`` within the deadline; their count."""
    spec = fleet.service(service)
    commands = [as_service_user(argv, spec.run_as) for argv in spec.deactivate]
    connect_seconds = max(0.1, min(SSH_CONNECT_SECONDS, deadline - time.monotonic()))
    with access.connect(fleet, server, connect_timeout=connect_seconds) as connection:
        for argv in commands:  # one deadline for all of them: fencing never waits longer
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransientError(f"fencing {server} ran out of time stopping its app")
            connection.run(argv, timeout=remaining)
    return len(commands)


def _confirm_stopped(fleet: Fleet, service: str, server: str, count: int, deadline: float) -> dict | None:
    """The deactivate commands' exit status is the customer's code's word: believe the app's
    health URL instead. Stopped: the fenced result. Still answering: kill the processes of the
    service's accounts (``planning/fencing.py``) and look again; still answering: None."""
    spec = fleet.service(service)
    address = fleet.server(server).address
    if not spec.health_url:
        return {
            "fenced": True,
            "method": "app stopped",
            "detail": f"{count} deactivation command(s) ran over SSH (no health_url to confirm the app stopped)",
        }
    if not _answers_within(spec.health_url, address, min(STOP_CONFIRM_SECONDS, deadline - time.monotonic())):
        return {
            "fenced": True,
            "method": "app stopped",
            "detail": f"{count} deactivation command(s) ran over SSH; the app no longer answers at {address}",
        }
    with access.connect(fleet, server) as connection:
        uids = None
        if spec.accounts.users:
            uids = fencing_plan.parse_uids(connection.run(["cat", "/etc/passwd"], check=False).text, spec.accounts.users)
        kill = fencing_plan.kill_service_processes(spec, uids)
        if kill is None:
            return None
        remaining = max(1.0, deadline - time.monotonic())
        signalled = connection.run(kill.argv, timeout=remaining, check=False).text.strip()
    get_run_logger().warning(
        "%s's app on %s still answered after its deactivate commands: killed %s (%s process(es))",
        service,
        server,
        kill.covers,
        signalled or "0",
    )
    if _answers_within(spec.health_url, address, min(STOP_CONFIRM_SECONDS, max(0.5, deadline - time.monotonic()))):
        return None
    return {
        "fenced": True,
        "method": "processes killed",
        "detail": f"{count} deactivation command(s) ran over SSH, but the app still answered: killed {kill.covers} "
        f"({signalled or '0'} process(es)); it no longer answers at {address}",
    }


def _answers_within(url: str, address: str, seconds: float) -> bool:
    """True when the app at ``address`` still answers 2xx at the end of ``seconds`` (an app
    shutting down may take a moment); False as soon as it stops answering."""
    from hotspare.probes import http_get_via_dns

    end = time.monotonic() + max(0.0, seconds)
    while True:
        try:
            status, _body, _address = http_get_via_dns(url, lambda _name: [address], timeout=1.0)
            answering = 200 <= status < 300
        except (OSError, ConnectionError):
            answering = False
        if not answering:
            return False
        if time.monotonic() >= end:
            return True
        time.sleep(0.1)


def _power_off(fleet: Fleet, server: str, deadline: float) -> str:
    """Power ``server`` off through its BMC and read the power state back; a sentence."""
    bmc = fleet.server(server).bmc
    if bmc is None:
        raise TransientError(f"{server} has no BMC in the fleet file to power it off")
    if not bmc.fence:
        raise TransientError(f"{server}'s BMC may not fence it (bmc.fence: false)")
    username, password = access.bmc_login(bmc.credentials_block)
    timeout = max(0.5, deadline - time.monotonic())
    where = f"{bmc.protocol} BMC {bmc.address}:{bmc.port}"
    if bmc.protocol == "ipmi":
        ipmi.chassis_power(bmc.address, bmc.port, username, password, "off", timeout)
        state = ipmi.chassis_power(
            bmc.address, bmc.port, username, password, "status", min(POWER_CHECK_SECONDS, max(0.5, deadline - time.monotonic()))
        )
    else:
        redfish.reset_system(bmc.scheme, bmc.address, bmc.port, bmc.system, username, password, "ForceOff", timeout)
        state = redfish.power_state(
            bmc.scheme,
            bmc.address,
            bmc.port,
            bmc.system,
            username,
            password,
            min(POWER_CHECK_SECONDS, max(0.5, deadline - time.monotonic())),
        ).lower()
    if state != "off":
        raise TransientError(f"{where} accepted the power-off but reports the power {state}")
    return f"powered off through its {where} (power state read back: off)"
