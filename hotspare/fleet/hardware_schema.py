"""Fleet file: where a server stands and how its baseboard management controller is read.

``Server.bmc`` says which protocol the server's BMC speaks (IPMI over LAN, or Redfish over
HTTP(S)), where it answers and which ``BmcCredentials`` block logs in; ``Server.location`` is
the rack and position the on-site staff need to find the machine ("rack B4, U12"). Both are
optional: a server without a BMC is checked for RAID and disk space only.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from hotspare.fleet.base import Name, Strict

DEFAULT_PORTS = {"ipmi": 623, "redfish": 443}


class Bmc(Strict):
    """A server's baseboard management controller: sensors (power supplies, fans, temperatures) and
    power control (fencing)."""

    protocol: Literal["ipmi", "redfish"] = Field(description="ipmi (ipmitool -I lanplus) or redfish (HTTP JSON API).")
    address: str = Field(min_length=1, description="BMC address on the management network.")
    port: int | None = Field(default=None, ge=1, le=65535, description="BMC port (default 623 for ipmi, 443 for redfish).")
    credentials_block: Name = Field(description="BmcCredentials block that logs in to the BMC.")
    scheme: Literal["https", "http"] = Field(default="https", description="Redfish only: https (default) or http (lab BMCs).")
    chassis: str = Field(default="1", min_length=1, description="Redfish only: the Chassis member id to read.")
    system: str = Field(
        default="1",
        min_length=1,
        description="Redfish only: the ComputerSystem member id a fence powers off (ComputerSystem.Reset).",
    )
    fence: bool = Field(
        default=True,
        description="An emergency failover powers this server off through its BMC when it cannot stop its "
        "app over SSH (false: never, e.g. a shared chassis).",
    )

    @model_validator(mode="after")
    def _default_port(self) -> Bmc:
        if self.port is None:
            object.__setattr__(self, "port", DEFAULT_PORTS[self.protocol])
        return self
