"""BMC sensor parsers on recorded outputs: ipmitool from the lab's ipmi_sim, Redfish JSON from
its Redfish BMC. Pure: no lab, no network."""

from __future__ import annotations

import json
from pathlib import Path

from hotspare.adapters import ipmi, redfish
from hotspare.lab import bmc_render
from hotspare.planning.readings import ComponentKind, ComponentState

DATA = Path(__file__).parents[1] / "data"


def by_component(readings):
    return {reading.component: reading for reading in readings}


def test_ipmitool_argv_never_holds_the_password():
    argv = ipmi.make_sdr_command("10.0.0.5", 623, "admin")
    assert "-E" in argv and "-P" not in argv and "sdr" in argv
    assert argv[argv.index("-H") + 1] == "10.0.0.5"


def test_sdr_elist_of_a_healthy_bmc():
    readings = ipmi.sdr_readings("mirror-west", (DATA / "ipmitool-sdr-elist-ok.txt").read_text())
    assert len(readings) == 5
    assert all(reading.state is ComponentState.ok for reading in readings)
    kinds = sorted(reading.kind.value for reading in readings)
    assert kinds == ["fan", "fan", "power_supply", "power_supply", "temperature"]


def test_sdr_elist_with_failed_psu_fan_and_temperature():
    readings = by_component(ipmi.sdr_readings("prod-east", (DATA / "ipmitool-sdr-elist-broken.txt").read_text()))
    psu = readings["power_supply:PS2 Status"]
    assert psu.kind is ComponentKind.power_supply and psu.state is ComponentState.failed
    assert "Failure detected" in psu.evidence and psu.part["bay"] == "power supply 2"
    assert readings["power_supply:PS1 Status"].state is ComponentState.ok
    fan = readings["fan:Fan1"]
    assert fan.state is ComponentState.failed and "400 RPM" in fan.evidence
    assert readings["fan:Fan2"].state is ComponentState.ok
    temperature = readings["temperature:Inlet Temp"]
    assert temperature.state is ComponentState.failed and "55 degrees C" in temperature.evidence


def test_sdr_parser_skips_warnings_and_reads_noncritical_and_missing_sensors():
    text = (
        "Unable to Get Channel Cipher Suites\n"
        "Fan3             | 16h | lnc | 29.3 | 1400 RPM\n"
        "CPU Temp         | 20h | ns  |  3.1 | No Reading\n"
        "PSU3 Status      | 0Ah | ok  | 10.3 | Presence detected, Predictive failure\n"
        "12V              | 30h | ok  |  7.1 | 12.10 Volts\n"
    )
    readings = by_component(ipmi.sdr_readings("x", text))
    assert readings["fan:Fan3"].state is ComponentState.degraded
    assert readings["temperature:CPU Temp"].state is ComponentState.unknown
    assert readings["power_supply:PSU3 Status"].state is ComponentState.degraded
    assert "12V" not in {reading.part["sensor"] for reading in readings.values()}


def test_redfish_healthy_chassis_carries_serials_and_bays():
    power = json.loads((DATA / "redfish-power-ok.json").read_text())
    thermal = json.loads((DATA / "redfish-thermal-ok.json").read_text())
    readings = by_component(redfish.chassis_readings("prod-west", power, thermal))
    assert all(reading.state is ComponentState.ok for reading in readings.values())
    supply = readings["power_supply:PSU2"]
    assert supply.part["serial"] == "P8PRODWEST02" and supply.part["bay"] == "PSU bay 2"
    assert readings["fan:Fan1"].part["bay"] == "Fan slot 1"


def test_redfish_faults_as_the_lab_writes_them():
    resources = bmc_render.redfish_tree("prod-west")
    for part, component, words in (
        ("psu", "power_supply:PSU2", "health Critical"),
        ("fan", "fan:Fan1", "400 RPM"),
        ("temp", "temperature:Inlet Temp", "55 degrees C"),
    ):
        broken = bmc_render.redfish_fault(resources, part, broken=True)
        readings = by_component(
            redfish.chassis_readings("prod-west", broken["/redfish/v1/Chassis/1/Power"], broken["/redfish/v1/Chassis/1/Thermal"])
        )
        assert readings[component].state is ComponentState.failed, part
        assert words in readings[component].evidence
        others = [r for name, r in readings.items() if name != component]
        assert all(r.state is ComponentState.ok for r in others)


def test_redfish_thresholds_without_health():
    thermal = {
        "Fans": [
            {
                "Name": "Fan7",
                "Reading": 1200,
                "ReadingUnits": "RPM",
                "LowerThresholdNonCritical": 1500,
                "LowerThresholdCritical": 1000,
                "Status": {"State": "Enabled", "Health": "OK"},
            }
        ],
        "Temperatures": [
            {
                "Name": "CPU1",
                "ReadingCelsius": 82,
                "UpperThresholdNonCritical": 80,
                "UpperThresholdCritical": 90,
                "Status": {"State": "Enabled"},
            }
        ],
    }
    readings = by_component(
        redfish.chassis_readings("x", {"PowerSupplies": [{"Name": "PSU1", "Status": {"State": "Absent"}}]}, thermal)
    )
    assert readings["fan:Fan7"].state is ComponentState.degraded
    assert readings["temperature:CPU1"].state is ComponentState.degraded
    assert readings["power_supply:PSU1"].state is ComponentState.failed
