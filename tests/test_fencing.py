"""Fencing through the BMC, against the lab's simulated BMCs (ipmi_sim speaking RMCP+, the lab's
Redfish BMC): power off takes a host's network and processes down, `lab heal` powers it on with
its app stopped; an emergency failover of an unreachable production powers it off alongside the
activation; with its BMC unreachable too, the failover goes on and says "unfenced".

Uses the session lab and fleet (tests/conftest.py); every test leaves the hosts powered on.
"""

from __future__ import annotations

import os
import shlex
import signal
from pathlib import Path

import pytest
from test_failover import SERVICE, address, dns_answer, latest_artifact, protected, reset_layout, task_state

from flows.failover import failover
from hotspare import access
from hotspare.adapters import ipmi, redfish
from hotspare.lab import bmc, network
from hotspare.lab.probes import http_get
from hotspare.lab.topology import host_by_name

from lab_helpers import poll, ssh, start_apps

pytestmark = pytest.mark.lab


def power_state(fleet, server: str) -> str:
    spec = fleet.server(server).bmc
    username, password = access.bmc_login(spec.credentials_block)
    if spec.protocol == "ipmi":
        return ipmi.chassis_power(spec.address, spec.port, username, password, "status")
    return redfish.power_state(spec.scheme, spec.address, spec.port, spec.system, username, password).lower()


def power_off(fleet, server: str) -> None:
    spec = fleet.server(server).bmc
    username, password = access.bmc_login(spec.credentials_block)
    if spec.protocol == "ipmi":
        ipmi.chassis_power(spec.address, spec.port, username, password, "off")
    else:
        redfish.reset_system(spec.scheme, spec.address, spec.port, spec.system, username, password, "ForceOff")


def app_answers(lab_env: dict, host: str) -> bool:
    return http_get(f"http://{lab_env['hosts'][host]['address']}:{lab_env['services'][SERVICE]['app_port']}/", 2.0) is not None


@pytest.fixture
def powered_on(lab, lab_env):
    """Every host powered on and healed after the test, even when it fails halfway."""
    yield
    for host in ("prod-east", "prod-west"):
        lab.heal(host)
    access.close_connections()


@pytest.mark.parametrize("host", ["prod-east", "prod-west"])  # IPMI, Redfish
def test_bmc_power_off_takes_the_host_down_and_heal_brings_it_back(fleet, lab, lab_env, powered_on, host):
    assert power_state(fleet, host) == "on"
    service_app = [name for name, spec in lab_env["services"].items() if spec["production"] == host]
    assert service_app, f"no lab service runs on {host}"
    spec = lab_env["services"][service_app[0]]
    url = f"http://{lab_env['hosts'][host]['address']}:{spec['app_port']}/"
    assert http_get(url, 2.0) is not None, "the app answers before the power-off"

    power_off(fleet, host)

    assert power_state(fleet, host) == "off"
    layout, spec_host = lab.layout, host_by_name(host)
    assert network.is_failed(layout, spec_host), "a powered-off host's traffic is dropped"
    assert bmc.is_powered_off(lab.directory, spec_host)
    lab.heal(host)
    assert power_state(fleet, host) == "on" and not network.is_failed(layout, spec_host)
    assert ssh(lab_env, host, "true").returncode == 0, "sshd answers again after power on"
    assert http_get(url, 2.0) is None, "the app stays stopped after power on (a fenced server)"
    start_apps(lab_env, host)
    poll(lambda: http_get(url, 2.0) is not None, 10, f"{service_app[0]} on {host} to answer again")


def test_wrong_bmc_password_is_refused(fleet):
    spec = fleet.server("prod-west").bmc
    username, _ = access.bmc_login(spec.credentials_block)
    with pytest.raises(Exception, match="refused the credentials"):
        redfish.reset_system(spec.scheme, spec.address, spec.port, spec.system, username, "not-the-password", "ForceOff")
    assert power_state(fleet, "prod-west") == "on"


def test_one_facilitys_bmc_credentials_switch_no_other_facilitys_server(fleet):
    """A block per facility (``lab-bmc-east``, ``lab-bmc-west``): whoever holds one facility's
    BMC password cannot power off the other facility's servers."""
    east, west = fleet.server("prod-east").bmc, fleet.server("prod-west").bmc
    assert (east.credentials_block, west.credentials_block) == (bmc.block_name("east"), bmc.block_name("west"))
    east_user, east_password = access.bmc_login(east.credentials_block)
    west_user, west_password = access.bmc_login(west.credentials_block)
    assert east_password != west_password
    with pytest.raises(Exception, match="refused the credentials"):
        redfish.reset_system(west.scheme, west.address, west.port, west.system, east_user, east_password, "ForceOff")
    with pytest.raises(Exception, match="ipmitool exited"):
        ipmi.chassis_power(east.address, east.port, west_user, west_password, "off")
    assert power_state(fleet, "prod-west") == "on" and power_state(fleet, "prod-east") == "on"


def test_failover_of_an_unreachable_production_powers_it_off(protected, lab, lab_env):
    lab.fail("prod-east")

    result = failover(SERVICE, yes=True)

    assert result["outcome"] == "ok"
    assert result["fencing"]["fenced"] is True and result["fencing"]["method"] == "powered off"
    assert "ipmi BMC" in result["fencing"]["detail"] and "read back: off" in result["fencing"]["detail"]
    assert dns_answer(lab_env) == [address(lab_env, "mirror")]
    assert bmc.is_powered_off(lab.directory, host_by_name("prod-east"))
    lab.heal("prod-east")  # powered on again: the old production comes back with its app stopped
    access.close_connections()
    assert ssh(lab_env, "prod-east", "true").returncode == 0
    assert not app_answers(lab_env, "prod-east"), "no second production after it comes back"


def test_failover_with_the_bmc_unreachable_goes_on_unfenced(protected, lab, lab_env):
    lab.fail("east")  # the facility: the host and its management network

    state = failover(SERVICE, yes=True, return_state=True)
    result = state.result()

    assert result["outcome"] == "ok" and result["fencing"]["fenced"] is False
    assert result["fencing"]["method"] == "unfenced"
    # The failover completed, but its fence step is not green: FAILED, named Unfenced, and the
    # summary the operator reads says so.
    fence_step = poll(lambda: task_state(state.state_details.flow_run_id, "fence production"), 30, "the fence step")
    assert (fence_step.type.value, fence_step.name) == ("FAILED", "Unfenced") and state.is_completed()
    assert "prod-east was not fenced" in fence_step.message
    summary = latest_artifact("failover-app1")
    assert "done, old production UNFENCED" in summary and "could not be stopped" in summary
    assert "not stopped over SSH" in result["fencing"]["detail"] and "BMC" in result["fencing"]["detail"]
    assert dns_answer(lab_env) == [address(lab_env, "mirror")]
    assert not bmc.is_powered_off(lab.directory, host_by_name("prod-east"))


# Appended to the app's command line: a server its ``ctl`` does not know as its own.
UNKNOWN_TO_CTL = ["--protocol", "HTTP/1.0"]


@pytest.fixture
def outliving_app(lab_env):
    """Start app1's server on prod-east so that ``ctl stop`` says "not running" and exits 0 while
    it keeps serving (a command line the ctl does not know), as its own account (``app1-web``) or
    as root; whatever the test leaves of it is killed by its PID afterwards."""
    started: list[int] = []
    port = lab_env["services"][SERVICE]["app_port"]

    def start(as_account: bool) -> None:
        stopped = ssh(lab_env, "prod-east", f"/srv/{SERVICE}/app/ctl", "stop")
        assert stopped.returncode == 0, stopped.stderr
        server = shlex.join(
            ["python3", "-m", "http.server", str(port), "--bind", "0.0.0.0", "--directory", f"/srv/{SERVICE}/data"]
            + UNKNOWN_TO_CTL
        )
        script = f"cd / && setsid {server} </dev/null >/dev/null 2>&1 & echo $!"
        argv = ["su", "-s", "/bin/sh", "app1-web", "-c", script] if as_account else ["sh", "-c", script]
        launched = ssh(lab_env, "prod-east", *argv)
        assert launched.returncode == 0, launched.stderr
        started.append(int(launched.stdout.split()[-1]))
        poll(lambda: app_answers(lab_env, "prod-east"), 10, "the unknown server to answer")
        status = ssh(lab_env, "prod-east", f"/srv/{SERVICE}/app/ctl", "status")
        assert status.returncode == 3, f"the ctl must not know this server: {status.stdout}"

    yield start
    for pid in started:
        try:
            if " ".join(UNKNOWN_TO_CTL).encode() in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" "):
                os.kill(pid, signal.SIGKILL)  # the server this fixture started (hosts share this PID space)
        except OSError:
            pass  # gone already: the fence killed it


def test_an_app_that_outlives_its_stop_command_is_killed_by_its_accounts(protected, outliving_app, lab, lab_env, powered_on):
    """The deactivate commands' exit status is the customer's code's word: ``ctl stop`` says "not
    running" and exits 0, and the app keeps serving. The fence believes the app's health URL
    instead, kills the processes of the service's accounts, and only then counts production as
    fenced."""
    outliving_app(as_account=True)

    result = failover(SERVICE, yes=True)

    assert result["outcome"] == "ok"
    assert (result["fencing"]["fenced"], result["fencing"]["method"]) == (True, "processes killed"), result["fencing"]
    assert "still answered" in result["fencing"]["detail"]
    assert not app_answers(lab_env, "prod-east"), "no second production: the old one stopped answering"
    assert dns_answer(lab_env) == [address(lab_env, "mirror")]
    assert not bmc.is_powered_off(lab.directory, host_by_name("prod-east")), "killed by account, not powered off"


def test_an_app_no_account_kill_reaches_leaves_a_shared_server_on_and_says_unfenced(
    protected, outliving_app, lab, lab_env, powered_on
):
    """Still answering after the kill (here it runs as root): the server would be powered off,
    but app3 runs there too, so the failover goes on named unfenced: a hostile app never makes
    hotspare power off its neighbours' server."""
    outliving_app(as_account=False)

    state = failover(SERVICE, yes=True, return_state=True)
    result = state.result()

    assert result["outcome"] == "ok" and result["fencing"]["fenced"] is False, result["fencing"]
    assert "still answers" in result["fencing"]["detail"] and "app3" in result["fencing"]["detail"]
    fence_step = poll(lambda: task_state(state.state_details.flow_run_id, "fence production"), 30, "the fence step")
    assert (fence_step.type.value, fence_step.name) == ("FAILED", "Unfenced")
    assert not bmc.is_powered_off(lab.directory, host_by_name("prod-east")), "app3's server stays on"
    assert dns_answer(lab_env) == [address(lab_env, "mirror")]
