"""Text and JSON of the lab's simulated BMCs: OpenIPMI ipmi_sim configs and Redfish resources.

Pure functions (no files, no processes). Every IPMI BMC has the same sensors: two power
supplies (discrete, sensor type Power Supply), two fans (RPM with lower thresholds) and an
inlet temperature (degrees C with upper thresholds). Sensor names are mixed case on purpose:
sdrcomp packs ALL-UPPERCASE names in 6-bit ASCII, which ipmitool prints as garbage.
"""

from __future__ import annotations

import copy

# Sensor numbers (ipmi_sim) and what `lab break` / `lab repair` set them to.
PSU_SENSORS = {"PS1 Status": 8, "PS2 Status": 9}
FAN_SENSORS = {"Fan1": 20, "Fan2": 21}
TEMPERATURE_SENSOR = ("Inlet Temp", 30)
FAN_RPM_PER_UNIT = 100
FAN_OK_RAW, FAN_BROKEN_RAW = 60, 4  # 6000 RPM; 400 RPM is below every lower threshold
TEMPERATURE_OK, TEMPERATURE_BROKEN = 24, 55  # degrees C; 55 is above upper critical (50)
# Which part each fault hits: the second power supply, the first fan.
BROKEN_PSU = "PS2 Status"
BROKEN_FAN = "Fan1"


def _sdr_common(number: int, entity: str, instance: int, sensor_type: str, reading_code: str, name: str) -> list[str]:
    return [
        "\tsensor_owner_id\t\t0x20",
        "\tsensor_owner_lun\t0",
        "\tchannel_number\t\t0",
        f"\tsensor_number\t\t{number}",
        f"\tentity_id\t\t{entity}",
        f"\tentity_instance\t\t{instance}",
        "\tinit_scanning\t\ttrue",
        "\tinit_sensor_type\ttrue",
        "\tdefault_sensor_scan_on\ttrue",
        f"\tsensor_type\t\t{sensor_type}",
        f"\tevent_reading_type_code\t{reading_code}",
        f'\tid_string\t\t"{name}"',
    ]


def _sdr_analog(
    number: int, entity: str, instance: int, sensor_type: str, unit: str, m: int, thresholds: dict[str, int], name: str
) -> str:
    lines = ["sdr type 1"] + _sdr_common(number, entity, instance, sensor_type, "1", name)
    lines += [
        "\tinit_thresholds\t\ttrue",
        "\tsensor_threshold_access\treadable",
        "\tanalog_data_format\tunsigned",
        "\trate_unit\t\tnone",
        "\tmodifier_unit\t\tnone",
        "\tpercentage\t\tfalse",
        f"\tbase_unit\t\t{unit}",
        "\tmodifier_unit_code\tunspecified",
        "\tlinearization\t\tlinear",
        f"\tm\t\t\t{m}",
        "\ttolerance\t\t0",
        "\tb\t\t\t0",
        "\taccuracy\t\t1",
        "\taccuracy_exp\t\t0",
        "\tsensor_direction\tinput",
        "\tr_exp\t\t\t0",
        "\tb_exp\t\t\t0",
        "\tsensor_maximum\t\t255",
        "\tsensor_minimum\t\t0",
    ]
    for threshold, value in thresholds.items():
        lines += [f"\treturn_{threshold}\t\ttrue", f"\t{threshold}_thresh\t\t{value}"]
    return "\n".join(lines + ["endsdr", ""])


def sdrs() -> str:
    """The sensor data records (sdrcomp input) every lab IPMI BMC shares."""
    records = []
    for index, (name, number) in enumerate(PSU_SENSORS.items(), start=1):
        lines = ["sdr type 2"] + _sdr_common(number, "power_supply", index, "Power_Supply", "0x6f", name)
        lines += [f"\tassert_event{bit}\t\ttrue\n\tevent{bit}_state_ret\ttrue" for bit in range(4)]
        records.append("\n".join(lines + ["endsdr", ""]))
    for index, (name, number) in enumerate(FAN_SENSORS.items(), start=1):
        records.append(
            _sdr_analog(
                number, "fan_cooling_device", index, "Fan", "RPM", FAN_RPM_PER_UNIT, {"lnr": 5, "lc": 10, "lnc": 15}, name
            )
        )
    name, number = TEMPERATURE_SENSOR
    records.append(_sdr_analog(number, "system_board", 1, "Temperature", "degrees_C", 1, {"unr": 60, "uc": 50, "unc": 45}, name))
    return "\n".join(records)


def emu_commands() -> str:
    """ipmi_sim's startup commands: the BMC, its sensors and their healthy values."""
    lines = ["mc_setbmc 0x20", "mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr", "sel_enable 0x20 1000 0x0a"]
    for number in PSU_SENSORS.values():
        # Power supply sensor type 0x08, sensor-specific states; bit 0 = presence detected.
        lines += [f"sensor_add 0x20 0 {number} 8 0x6f", f"sensor_set_bit_clr_rest 0x20 0 {number} 0 1"]
    for number in FAN_SENSORS.values():
        lines += [
            f"sensor_add 0x20 0 {number} 4 1",
            f"sensor_set_threshold 0x20 0 {number} settable 000111 0 0 0 5 10 15",
            f"sensor_set_value 0x20 0 {number} {FAN_OK_RAW} 0",
        ]
    number = TEMPERATURE_SENSOR[1]
    lines += [
        f"sensor_add 0x20 0 {number} 1 1",
        f"sensor_set_threshold 0x20 0 {number} settable 111000 60 50 45 0 0 0",
        f"sensor_set_value 0x20 0 {number} {TEMPERATURE_OK} 0",
        "mc_enable 0x20",
    ]
    return "\n".join(lines) + "\n"


def lan_conf(
    name: str, address: str, port: int, console_port: int, username: str, password: str, chassis_control: str | None = None
) -> str:
    """ipmi_sim's LAN configuration: one RMCP+ channel on the BMC address, one admin user.

    The password sits in this file (mode 0600 in a 0700 folder), as on a real BMC's flash.
    ``chassis_control``: the program ipmi_sim runs for chassis power (it appends ``get power``
    or ``set power "0|1"``); without one, `chassis power off` is refused as unsupported.
    """
    auths = "none md2 md5 straight"
    return "\n".join(
        [
            f'name "{name}"',
            "set_working_mc 0x20",
            "  startlan 1",
            f"    addr {address} {port}",
            "    priv_limit admin",
            f"    allowed_auths_callback {auths}",
            f"    allowed_auths_user {auths}",
            f"    allowed_auths_operator {auths}",
            f"    allowed_auths_admin {auths}",
            "    guid a123456789abcdefa123456789abcdef",
            "  endlan",
            *([f'  chassis_control "{chassis_control}"'] if chassis_control else []),
            f'  user 2 true "{username}" "{password}" admin 10 md5',
            # The simulator's command console (inject faults); lab network only.
            f"console {address} {console_port}",
            "",
        ]
    )


def console_commands(part: str, broken: bool) -> list[str]:
    """ipmi_sim console lines that break or repair a part (psu, fan, temp)."""
    if part == "psu":
        # Bit 1 of a power supply sensor = "Failure detected".
        return [f"sensor_set_bit 0x20 0 {PSU_SENSORS[BROKEN_PSU]} 1 {int(broken)} 1"]
    if part == "fan":
        raw = FAN_BROKEN_RAW if broken else FAN_OK_RAW
        return [f"sensor_set_value 0x20 0 {FAN_SENSORS[BROKEN_FAN]} {raw} 1"]
    if part == "temp":
        value = TEMPERATURE_BROKEN if broken else TEMPERATURE_OK
        return [f"sensor_set_value 0x20 0 {TEMPERATURE_SENSOR[1]} {value} 1"]
    raise ValueError(f"unknown BMC part {part!r}; use psu, fan or temp")


# ----- Redfish -----------------------------------------------------------------------------


def redfish_tree(host_name: str, chassis: str = "1", system: str = "1") -> dict[str, dict]:
    """Redfish resources by path (without /index.json) for a healthy server, powered on.

    The System's ``PowerState`` is filled in by the BMC from the host's power switch."""
    base = f"/redfish/v1/Chassis/{chassis}"
    system_path = f"/redfish/v1/Systems/{system}"
    ok = {"State": "Enabled", "Health": "OK"}
    serial = host_name.upper().replace("-", "")
    power_supplies = [
        {
            "@odata.id": f"{base}/Power#/PowerSupplies/{index}",
            "MemberId": str(index),
            "Name": f"PSU{index + 1}",
            "Model": "PWS-801A-1R",
            "Manufacturer": "Lab Power",
            "PowerCapacityWatts": 800,
            "SerialNumber": f"P8{serial}{index + 1:02d}",
            "PartNumber": "PWS-801A",
            "Location": {
                "PartLocation": {"ServiceLabel": f"PSU bay {index + 1}", "LocationType": "Bay", "LocationOrdinalValue": index + 1}
            },
            "Status": dict(ok),
        }
        for index in range(2)
    ]
    fans = [
        {
            "@odata.id": f"{base}/Thermal#/Fans/{index}",
            "MemberId": str(index),
            "Name": f"Fan{index + 1}",
            "Reading": FAN_OK_RAW * FAN_RPM_PER_UNIT,
            "ReadingUnits": "RPM",
            "LowerThresholdNonCritical": 1500,
            "LowerThresholdCritical": 1000,
            "LowerThresholdFatal": 500,
            "SerialNumber": f"F4{serial}{index + 1:02d}",
            "PartNumber": "FAN-4056",
            "Location": {
                "PartLocation": {
                    "ServiceLabel": f"Fan slot {index + 1}",
                    "LocationType": "Slot",
                    "LocationOrdinalValue": index + 1,
                }
            },
            "Status": dict(ok),
        }
        for index in range(2)
    ]
    temperatures = [
        {
            "@odata.id": f"{base}/Thermal#/Temperatures/0",
            "MemberId": "0",
            "Name": "Inlet Temp",
            "ReadingCelsius": TEMPERATURE_OK,
            "UpperThresholdNonCritical": 45,
            "UpperThresholdCritical": 50,
            "UpperThresholdFatal": 60,
            "PhysicalContext": "Intake",
            "Status": dict(ok),
        }
    ]
    return {
        "/redfish/v1": {
            "@odata.id": "/redfish/v1",
            "@odata.type": "#ServiceRoot.v1_5_0.ServiceRoot",
            "Id": "RootService",
            "Name": "Root Service",
            "RedfishVersion": "1.6.0",
            "Chassis": {"@odata.id": "/redfish/v1/Chassis"},
            "Systems": {"@odata.id": "/redfish/v1/Systems"},
        },
        "/redfish/v1/Systems": {
            "@odata.id": "/redfish/v1/Systems",
            "@odata.type": "#ComputerSystemCollection.ComputerSystemCollection",
            "Name": "Computer System Collection",
            "Members@odata.count": 1,
            "Members": [{"@odata.id": system_path}],
        },
        system_path: {
            "@odata.id": system_path,
            "@odata.type": "#ComputerSystem.v1_10_0.ComputerSystem",
            "Id": system,
            "Name": host_name,
            "HostName": host_name,
            "Status": dict(ok),
            "Actions": {
                "#ComputerSystem.Reset": {
                    "target": f"{system_path}/Actions/ComputerSystem.Reset",
                    "ResetType@Redfish.AllowableValues": [
                        "On",
                        "ForceOff",
                        "GracefulShutdown",
                        "ForceRestart",
                        "ForceOn",
                        "PushPowerButton",
                    ],
                }
            },
        },
        "/redfish/v1/Chassis": {
            "@odata.id": "/redfish/v1/Chassis",
            "@odata.type": "#ChassisCollection.ChassisCollection",
            "Name": "Chassis Collection",
            "Members@odata.count": 1,
            "Members": [{"@odata.id": base}],
        },
        base: {
            "@odata.id": base,
            "@odata.type": "#Chassis.v1_10_0.Chassis",
            "Id": chassis,
            "Name": f"{host_name} chassis",
            "ChassisType": "RackMount",
            "SerialNumber": f"CH{serial}",
            "Status": dict(ok),
            "Power": {"@odata.id": f"{base}/Power"},
            "Thermal": {"@odata.id": f"{base}/Thermal"},
        },
        f"{base}/Power": {
            "@odata.id": f"{base}/Power",
            "@odata.type": "#Power.v1_5_0.Power",
            "Id": "Power",
            "Name": "Power",
            "PowerSupplies": power_supplies,
        },
        f"{base}/Thermal": {
            "@odata.id": f"{base}/Thermal",
            "@odata.type": "#Thermal.v1_5_0.Thermal",
            "Id": "Thermal",
            "Name": "Thermal",
            "Fans": fans,
            "Temperatures": temperatures,
        },
    }


def redfish_fault(resources: dict[str, dict], part: str, broken: bool, chassis: str = "1") -> dict[str, dict]:
    """The resources with a part broken (or repaired): what `lab break/repair` writes."""
    changed = copy.deepcopy(resources)
    base = f"/redfish/v1/Chassis/{chassis}"
    if part == "psu":
        supply = changed[f"{base}/Power"]["PowerSupplies"][1]
        supply["Status"] = (
            {"State": "UnavailableOffline", "Health": "Critical"} if broken else {"State": "Enabled", "Health": "OK"}
        )
    elif part == "fan":
        fan = changed[f"{base}/Thermal"]["Fans"][0]
        fan["Reading"] = (FAN_BROKEN_RAW if broken else FAN_OK_RAW) * FAN_RPM_PER_UNIT
        fan["Status"]["Health"] = "Critical" if broken else "OK"
    elif part == "temp":
        sensor = changed[f"{base}/Thermal"]["Temperatures"][0]
        sensor["ReadingCelsius"] = TEMPERATURE_BROKEN if broken else TEMPERATURE_OK
        sensor["Status"]["Health"] = "Critical" if broken else "OK"
    else:
        raise ValueError(f"unknown BMC part {part!r}; use psu, fan or temp")
    return changed
