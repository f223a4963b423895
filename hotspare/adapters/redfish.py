"""Reading a BMC's sensors over Redfish (HTTP JSON), and turning them into readings.

``read_chassis`` GETs the Chassis ``Power`` and ``Thermal`` resources with basic
authentication from the server's ``BmcCredentials`` block, with a timeout; ``chassis_readings``
is pure: the two JSON documents in, readings out, with each part's serial number and bay in
``part`` (what a replacement request needs).
"""

from __future__ import annotations

import httpx

from hotspare.adapters.errors import PermanentError, TransientError
from hotspare.planning.readings import ComponentKind, ComponentState, Reading

TIMEOUT_SECONDS = 10.0
HEALTH = {"OK": ComponentState.ok, "Warning": ComponentState.degraded, "Critical": ComponentState.failed}


def chassis_url(scheme: str, address: str, port: int, chassis: str) -> str:
    return f"{scheme}://{address}:{port}/redfish/v1/Chassis/{chassis}"


def read_chassis(
    scheme: str, address: str, port: int, chassis: str, username: str, password: str, timeout: float = TIMEOUT_SECONDS
) -> tuple[dict, dict]:
    """(Power, Thermal) JSON of one chassis; TransientError / PermanentError say why not."""
    base = chassis_url(scheme, address, port, chassis)
    documents = []
    try:
        with httpx.Client(auth=(username, password), timeout=timeout, follow_redirects=False) as client:
            for resource in ("Power", "Thermal"):
                response = client.get(f"{base}/{resource}", headers={"Accept": "application/json"})
                if response.status_code in (401, 403):
                    raise PermanentError(
                        f"Redfish BMC {address}:{port} refused the credentials "
                        f"({response.status_code}); check the BmcCredentials block"
                    )
                if response.status_code != 200:
                    raise TransientError(f"Redfish BMC {address}:{port}: GET {base}/{resource} answered {response.status_code}")
                documents.append(response.json())
    except httpx.HTTPError as error:
        raise TransientError(
            f"Redfish BMC {address}:{port} did not answer within {timeout:.0f} s "
            f"({type(error).__name__}); check the management network"
        ) from None
    except ValueError:
        raise TransientError(f"Redfish BMC {address}:{port} sent a reply that is not JSON") from None
    return documents[0], documents[1]


def system_url(scheme: str, address: str, port: int, system: str) -> str:
    return f"{scheme}://{address}:{port}/redfish/v1/Systems/{system}"


def power_state(
    scheme: str, address: str, port: int, system: str, username: str, password: str, timeout: float = TIMEOUT_SECONDS
) -> str:
    """The System's ``PowerState`` (``On``, ``Off``, ``PoweringOn``, ...)."""
    response = _request("GET", system_url(scheme, address, port, system), address, port, username, password, timeout)
    try:
        return str(response.json()["PowerState"])
    except (ValueError, KeyError, TypeError):
        raise TransientError(f"Redfish BMC {address}:{port} sent a System without PowerState") from None


def reset_system(
    scheme: str,
    address: str,
    port: int,
    system: str,
    username: str,
    password: str,
    reset_type: str = "ForceOff",
    timeout: float = TIMEOUT_SECONDS,
) -> None:
    """POST ``ComputerSystem.Reset`` (``ForceOff`` powers the server off at once: a fence)."""
    url = system_url(scheme, address, port, system) + "/Actions/ComputerSystem.Reset"
    _request("POST", url, address, port, username, password, timeout, {"ResetType": reset_type})


def _request(
    method: str, url: str, address: str, port: int, username: str, password: str, timeout: float, body: dict | None = None
) -> httpx.Response:
    try:
        with httpx.Client(auth=(username, password), timeout=timeout, follow_redirects=False) as client:
            response = client.request(method, url, json=body, headers={"Accept": "application/json"})
    except httpx.HTTPError as error:
        raise TransientError(
            f"Redfish BMC {address}:{port} did not answer within {timeout:.0f} s "
            f"({type(error).__name__}); check the management network"
        ) from None
    if response.status_code in (401, 403):
        raise PermanentError(
            f"Redfish BMC {address}:{port} refused the credentials ({response.status_code}); check the BmcCredentials block"
        )
    if response.status_code >= 300:
        raise TransientError(f"Redfish BMC {address}:{port}: {method} {url} answered {response.status_code}")
    return response


def _health(item: dict) -> tuple[ComponentState, str]:
    status = item.get("Status") or {}
    state = status.get("State", "Enabled")
    health = status.get("Health")
    if state == "Absent":
        return ComponentState.failed, "absent"
    return HEALTH.get(health, ComponentState.unknown), f"health {health}, state {state}"


def _part(item: dict) -> dict[str, str]:
    location = (item.get("Location") or {}).get("PartLocation") or {}
    part = {
        "serial": item.get("SerialNumber"),
        "bay": location.get("ServiceLabel"),
        "model": item.get("Model"),
        "part_number": item.get("PartNumber"),
        "manufacturer": item.get("Manufacturer"),
    }
    return {key: str(value) for key, value in part.items() if value}


def _worse(first: ComponentState, second: ComponentState) -> ComponentState:
    return max(first, second, key=lambda state: state.rank)


def chassis_readings(subject: str, power: dict, thermal: dict, site: str = "control") -> list[Reading]:
    """Power supply, fan and temperature readings from Redfish Power and Thermal JSON."""
    readings = []
    for supply in power.get("PowerSupplies", []):
        name = supply.get("Name") or f"PSU{supply.get('MemberId', '?')}"
        state, said = _health(supply)
        readings.append(
            Reading(
                subject, f"power_supply:{name}", ComponentKind.power_supply, state, f"Redfish {name}: {said}", site, _part(supply)
            )
        )
    for fan in thermal.get("Fans", []):
        name = fan.get("Name") or fan.get("FanName") or f"Fan{fan.get('MemberId', '?')}"
        state, said = _health(fan)
        value = fan.get("Reading")
        if isinstance(value, (int, float)):
            unit = fan.get("ReadingUnits", "")
            said = f"{value} {unit}".strip() + f", {said}"
            if fan.get("LowerThresholdCritical") is not None and value <= fan["LowerThresholdCritical"]:
                state = _worse(state, ComponentState.failed)
                said += f", at or below critical {fan['LowerThresholdCritical']}"
            elif fan.get("LowerThresholdNonCritical") is not None and value <= fan["LowerThresholdNonCritical"]:
                state = _worse(state, ComponentState.degraded)
                said += f", at or below warning {fan['LowerThresholdNonCritical']}"
        readings.append(Reading(subject, f"fan:{name}", ComponentKind.fan, state, f"Redfish {name}: {said}", site, _part(fan)))
    for sensor in thermal.get("Temperatures", []):
        name = sensor.get("Name") or f"Temp{sensor.get('MemberId', '?')}"
        state, said = _health(sensor)
        value = sensor.get("ReadingCelsius")
        if isinstance(value, (int, float)):
            said = f"{value} degrees C, {said}"
            if sensor.get("UpperThresholdCritical") is not None and value >= sensor["UpperThresholdCritical"]:
                state = _worse(state, ComponentState.failed)
                said += f", at or above critical {sensor['UpperThresholdCritical']}"
            elif sensor.get("UpperThresholdNonCritical") is not None and value >= sensor["UpperThresholdNonCritical"]:
                state = _worse(state, ComponentState.degraded)
                said += f", at or above warning {sensor['UpperThresholdNonCritical']}"
        part = {"sensor": name}
        if sensor.get("PhysicalContext"):
            part["context"] = str(sensor["PhysicalContext"])
        readings.append(
            Reading(subject, f"temperature:{name}", ComponentKind.temperature, state, f"Redfish {name}: {said}", site, part)
        )
    return readings
