"""Real hardware faults in the lab, seen by ``read_hardware``: a dead RAID member (the
filesystem keeps running degraded, the app answers, replication still works) and power
supply, fan and temperature faults reported by IPMI and Redfish BMCs; `lab repair` clears
each. Uses the session lab and fleet (tests/conftest.py)."""

from __future__ import annotations

import pytest

from flows.replicate import replicate_service
from hotspare.cli import main
from hotspare.lab.probes import http_get
from hotspare.planning.readings import ComponentState
from tasks.hardware import _bmc_readings, read_hardware

pytestmark = pytest.mark.lab


def lab_command(lab_env: dict, *arguments: str) -> None:
    assert main(["lab", *arguments, "--dir", lab_env["directory"], "--slot", str(lab_env["slot"])]) == 0


def readings_of(fleet, server: str) -> dict:
    return {reading.component: reading for reading in read_hardware(fleet, server)}


@pytest.fixture
def repaired(lab_env):
    """Undo every fault a test made, even when it fails halfway."""
    made = []
    yield made
    for host, part in reversed(made):
        lab_command(lab_env, "repair", host, part)


def test_healthy_lab_reads_ok_everywhere_it_has_hardware(fleet):
    production = readings_of(fleet, "prod-east")
    assert production["raid:/srv"].state is ComponentState.ok
    assert [production[f"disk:devid {n}"].state for n in (1, 2, 3, 4)] == [ComponentState.ok] * 4
    assert {
        "power_supply:PS1 Status",
        "power_supply:PS2 Status",
        "fan:Fan1",
        "fan:Fan2",
        "temperature:Inlet Temp",
        "space:/srv",
    } <= set(production)
    redfish = readings_of(fleet, "prod-west")
    assert redfish["power_supply:PSU2"].part["serial"] == "P8PRODWEST02"
    standby = readings_of(fleet, "standby-east")
    assert standby["raid:/srv"].state is ComponentState.ok and "disk:devid 2" not in standby
    for readings in (production, redfish, standby):
        assert all(r.state is ComponentState.ok for r in readings.values()), [
            r.evidence for r in readings.values() if r.state is not ComponentState.ok
        ]


def test_dead_disk_is_seen_service_keeps_running_and_replace_clears_it(fleet, lab_env, repaired):
    lab_command(lab_env, "break", "prod-east", "disk")
    repaired.append(("prod-east", "disk"))
    seen = readings_of(fleet, "prod-east")
    disk = seen["disk:devid 2"]
    assert disk.subject == "prod-east" and disk.state is ComponentState.failed
    assert "write_io_errs" in disk.evidence and disk.part["devid"] == "2"
    assert seen["raid:/srv"].state is ComponentState.degraded
    assert "devid 2" in seen["raid:/srv"].evidence
    # Degraded, not down: the app answers and a replication reads all of its data.
    address = lab_env["hosts"]["prod-east"]["address"]
    assert http_get(f"http://{address}:{lab_env['services']['app1']['app_port']}/health.txt", 2.0) is not None
    assert replicate_service("app1")["outcome"] == "ok"

    lab_command(lab_env, "repair", "prod-east", "disk")
    repaired.clear()
    after = readings_of(fleet, "prod-east")
    assert after["raid:/srv"].state is ComponentState.ok
    assert after["disk:devid 2"].state is ComponentState.ok
    assert after["disk:devid 2"].part["device"] != disk.part["device"]  # a new disk


@pytest.mark.parametrize(
    "host, part, component, words",
    [
        ("mirror-west", "psu", "power_supply:PS2 Status", "Failure detected"),
        ("mirror-west", "fan", "fan:Fan1", "400 RPM"),
        ("mirror-west", "temp", "temperature:Inlet Temp", "55 degrees C"),
        ("prod-west", "psu", "power_supply:PSU2", "health Critical"),
        ("prod-west", "fan", "fan:Fan1", "400 RPM"),
        ("prod-west", "temp", "temperature:Inlet Temp", "55 degrees C"),
    ],
)
def test_bmc_fault_is_seen_and_repair_clears_it(fleet, lab_env, repaired, host, part, component, words):
    lab_command(lab_env, "break", host, part)
    repaired.append((host, part))
    broken = {r.component: r for r in _bmc_readings(fleet, host)}
    assert broken[component].subject == host
    assert broken[component].state is ComponentState.failed
    assert words in broken[component].evidence
    assert [name for name, r in broken.items() if r.state is not ComponentState.ok] == [component]
    lab_command(lab_env, "repair", host, part)
    repaired.clear()
    assert all(r.state is ComponentState.ok for r in _bmc_readings(fleet, host))


def test_bmc_answers_while_its_host_is_cut_off_but_not_when_its_facility_is(fleet, lab):
    lab.fail("standby-west")
    try:
        assert all(r.state is ComponentState.ok for r in _bmc_readings(fleet, "standby-west"))
    finally:
        lab.heal("standby-west")
    lab.fail("west")
    try:
        [reading] = _bmc_readings(fleet, "standby-west")
        assert reading.component == "reachability:bmc"
        assert reading.state is ComponentState.unknown and "not read" in reading.evidence
    finally:
        lab.heal("west")
