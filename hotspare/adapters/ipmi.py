"""A BMC over IPMI-over-LAN (RMCP+) with ipmitool: its sensors, parsed, and its chassis power.

``read_sdr`` runs ``ipmitool -I lanplus ... -E sdr elist`` and ``chassis_power`` ``... -E
chassis power status|off|on`` (a fence): the password reaches ipmitool
only through the ``IPMI_PASSWORD`` environment variable (``-E``), never argv, so it shows
in no process list or log. ``sdr_readings`` is pure: recorded output in, readings out.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass

from hotspare.adapters.errors import PermanentError, TransientError
from hotspare.planning.readings import ComponentKind, ComponentState, Reading

IPMITOOL = "ipmitool"
# Cipher suite 3 (RAKP-HMAC-SHA1, AES-CBC-128) is what every IPMI 2.0 BMC supports; naming it
# skips ipmitool's "Get Channel Cipher Suites" probe, which costs ~10 s on BMCs without it.
CIPHER_SUITE = "3"
TIMEOUT_SECONDS = 20.0


def _lanplus(address: str, port: int, username: str, cipher_suite: str, retries: int) -> list[str]:
    """ipmitool's RMCP+ login arguments; no secret in them (-E takes the password from the env)."""
    return [IPMITOOL, "-I", "lanplus", "-C", cipher_suite, "-N", "1", "-R", str(retries),
            "-H", address, "-p", str(port), "-U", username, "-E"]  # fmt: skip


def make_sdr_command(address: str, port: int, username: str, cipher_suite: str = CIPHER_SUITE) -> list[str]:
    """ipmitool argv for `sdr elist` (no secret in it: -E takes the password from the env)."""
    return [*_lanplus(address, port, username, cipher_suite, retries=3), "sdr", "elist"]


def make_power_command(address: str, port: int, username: str, action: str, cipher_suite: str = CIPHER_SUITE) -> list[str]:
    """ipmitool argv for `chassis power status|off|on` (one retry: a fence must be quick)."""
    if action not in ("status", "off", "on"):
        raise ValueError(f"unknown chassis power action {action!r}")
    return [*_lanplus(address, port, username, cipher_suite, retries=2), "chassis", "power", action]


def read_sdr(address: str, port: int, username: str, password: str, timeout: float = TIMEOUT_SECONDS) -> str:
    """The BMC's `sdr elist` text; TransientError when it does not answer in time."""
    return _ipmitool(make_sdr_command(address, port, username), address, port, password, timeout)


def chassis_power(address: str, port: int, username: str, password: str, action: str, timeout: float = 10.0) -> str:
    """Switch (``off``/``on``) or read (``status``) the server's power; returns ``on`` or ``off``
    for ``status``, the action otherwise. Errors as for ``read_sdr``."""
    text = _ipmitool(make_power_command(address, port, username, action), address, port, password, timeout)
    if action != "status":
        return action
    match = re.search(r"Chassis Power is (on|off)", text)
    if match is None:
        raise TransientError(f"BMC {address}:{port}: unexpected `chassis power status` answer {text.strip()[:80]!r}")
    return match.group(1)


def _ipmitool(argv: list[str], address: str, port: int, password: str, timeout: float) -> str:
    """Run one ipmitool command with the password in its environment; its standard output."""
    environment = {**os.environ, "IPMI_PASSWORD": password}
    where = f"BMC {address}:{port}"
    what = " ".join(argv[argv.index("-E") + 1 :])
    try:
        result = subprocess.run(argv, env=environment, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise TransientError(
            f"{where} did not answer `ipmitool {what}` within {timeout:.0f} s; check the management network"
        ) from None
    except FileNotFoundError:
        raise PermanentError("ipmitool is not installed on the control machine (Debian package ipmitool)") from None
    errors = "; ".join(line for line in result.stderr.splitlines() if line.strip() and "Cipher Suites" not in line)
    if result.returncode != 0:
        raise TransientError(
            f"{where}: ipmitool exited {result.returncode}: "
            f"{errors or 'no output'} (wrong BMC credentials, or the BMC "
            f"is unreachable)"
        )
    return result.stdout


@dataclass(frozen=True)
class SdrLine:
    """One line of `ipmitool sdr elist`: name | id | status | entity | reading."""

    name: str
    sensor_id: str
    status: str
    entity: str
    reading: str

    @property
    def entity_id(self) -> int | None:
        match = re.match(r"^(\d+)\.(\d+)$", self.entity)
        return int(match[1]) if match else None

    @property
    def entity_instance(self) -> str:
        return self.entity.split(".", 1)[1] if "." in self.entity else ""


def parse_sdr_elist(text: str) -> list[SdrLine]:
    """Lines of `ipmitool sdr elist` (other lines, such as warnings, are skipped)."""
    lines = []
    for line in text.splitlines():
        fields = [field.strip() for field in line.split("|")]
        if len(fields) == 5:
            lines.append(SdrLine(*fields))
    return lines


# IPMI entity ids (IPMI 2.0 table 43-13): 10 power supply, 29 fan / cooling device.
ENTITY_POWER_SUPPLY = 10
ENTITY_FAN = 29
# Power supply sensor-specific offsets that mean the unit no longer supplies power.
PSU_FAILED_STATES = ("Failure detected", "Power Supply AC lost", "AC lost or out-of-range", "AC out-of-range, but present")
PSU_DEGRADED_STATES = ("Predictive failure", "Config Error")
THRESHOLD_STATES = {
    "ok": ComponentState.ok,
    "nc": ComponentState.degraded,
    "lnc": ComponentState.degraded,
    "unc": ComponentState.degraded,
    "cr": ComponentState.failed,
    "lcr": ComponentState.failed,
    "ucr": ComponentState.failed,
    "nr": ComponentState.failed,
    "lnr": ComponentState.failed,
    "unr": ComponentState.failed,
    "ns": ComponentState.unknown,
}


def _kind(line: SdrLine) -> ComponentKind | None:
    """What part a sensor is about: by IPMI entity, then unit, then name (a sensor without a
    reading prints no unit)."""
    name = line.name.lower()
    if line.entity_id == ENTITY_POWER_SUPPLY or re.match(r"^(psu|ps\d|power supply)", name):
        return ComponentKind.power_supply
    if line.entity_id == ENTITY_FAN or line.reading.endswith("RPM") or "fan" in name:
        return ComponentKind.fan
    if "degrees C" in line.reading or "temp" in name:
        return ComponentKind.temperature
    return None


def sdr_readings(subject: str, text: str, site: str = "control") -> list[Reading]:
    """Power supply, fan and temperature readings from `sdr elist` output (others skipped)."""
    readings = []
    for line in parse_sdr_elist(text):
        kind = _kind(line)
        if kind is None:
            continue
        if kind is ComponentKind.power_supply and _is_discrete(line):
            state = _psu_state(line.reading)
            evidence = f"{line.name}: {line.reading or 'no state reported'}"
        else:
            state = THRESHOLD_STATES.get(line.status, ComponentState.unknown)
            evidence = (
                f"{line.name} reads {line.reading} (status {line.status}"
                f"{'' if state is ComponentState.ok else ', outside its thresholds'})"
            )
            if line.status == "ns":
                evidence = f"{line.name}: no reading (sensor not available)"
        part = {"sensor": line.name, "entity": line.entity}
        if kind is ComponentKind.power_supply:
            part["bay"] = f"power supply {line.entity_instance}"
        elif kind is ComponentKind.fan:
            part["bay"] = f"fan {line.entity_instance}"
        readings.append(Reading(subject, f"{kind.value}:{line.name}", kind, state, f"IPMI {evidence}", site, part))
    return readings


def _is_discrete(line: SdrLine) -> bool:
    """Discrete sensors print states ("Presence detected"), analog ones a number first."""
    return not re.match(r"^-?\d", line.reading)


def _psu_state(reading: str) -> ComponentState:
    states = [state.strip() for state in reading.split(",") if state.strip()]
    if any(state in PSU_FAILED_STATES for state in states):
        return ComponentState.failed
    if any(state in PSU_DEGRADED_STATES for state in states):
        return ComponentState.degraded
    if "Presence detected" in states:
        return ComponentState.ok
    return ComponentState.failed if not states else ComponentState.unknown
