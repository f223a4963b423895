"""The fleet file: the operators' written continuity plan, parsed and validated."""

from hotspare.fleet.load import FleetError, FleetProblem, load_fleet, parse_fleet
from hotspare.fleet.schema import Fleet, Role, Server, Service, Zone

__all__ = ["Fleet", "FleetError", "FleetProblem", "Role", "Server", "Service", "Zone", "load_fleet", "parse_fleet"]
