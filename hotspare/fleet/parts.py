"""The parts of a fleet file that the plan rules check, salvaged even when the schema fails.

An operator with a typo in one server and a plan mistake in a service should see both in one
run. So when the whole ``Fleet`` fails validation, each list item is validated on its own and
the rules run on the items that pass, at their original positions in the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from hotspare.fleet.customer_schema import CustomerNotices
from hotspare.fleet.health_schema import Health
from hotspare.fleet.incident_schema import Incidents
from hotspare.fleet.schema import Contact, Facility, Server, Service, Zone

Item = TypeVar("Item")


@dataclass(frozen=True)
class Section(Generic[Item]):
    """One list section: its valid items and the names of its invalid ones, by file position.

    ``invalid_names`` keeps the ``name`` of each item that failed the schema (when it is a
    string): the item exists, so references to it must not be reported as unknown as well.
    """

    items: tuple[tuple[int, Item], ...] = ()
    invalid_names: tuple[tuple[int, str], ...] = ()

    def names(self) -> list[tuple[int, str]]:
        """(position, name) of every named item, valid or not, in file order."""
        valid = [(position, item.name) for position, item in self.items]
        return sorted(valid + list(self.invalid_names))

    def known_names(self) -> set[str]:
        return {name for _, name in self.names()}


@dataclass(frozen=True)
class FleetParts:
    """What the plan rules see. ``None`` marks a part unusable as a whole (missing, wrong
    type, too short): the schema reports it, and rules that need it are skipped rather than
    reporting everything that refers to it.
    """

    version: int | None = None
    facilities: Section[Facility] | None = None
    servers: Section[Server] | None = None
    zones: Section[Zone] | None = None
    services: Section[Service] | None = None
    contacts: Section[Contact] | None = None
    escalation: tuple[tuple[int, str], ...] | None = None
    # Whole sections (None when absent or when they fail the schema: the schema reports them).
    incidents: Incidents | None = None
    customer_notices: CustomerNotices | None = None
    health: Health | None = None


_SECTION_TYPES: Mapping[str, type] = {
    "incidents": Incidents,
    "customer_notices": CustomerNotices,
    "health": Health,
}

_ITEM_TYPES: Mapping[str, type] = {
    "facilities": Facility,
    "servers": Server,
    "zones": Zone,
    "services": Service,
    "contacts": Contact,
}


def fleet_parts(data: Mapping[str, Any], schema_errors: list[ErrorDetails]) -> FleetParts:
    """The usable parts of the raw fleet ``data``, given the errors of validating it whole.

    A part with an error located at the part itself (``loc == (part,)``) is unusable; any
    other part holds only the items that pass validation on their own.
    """
    unusable = {detail["loc"][0] for detail in schema_errors if len(detail["loc"]) == 1}
    sections = {
        name: None if name in unusable else _section(data.get(name, []), TypeAdapter(item_type))
        for name, item_type in _ITEM_TYPES.items()
    }
    escalation = None
    if "escalation" not in unusable:
        escalation = _section(data.get("escalation", []), TypeAdapter(str)).items
    version = None if "version" in unusable else TypeAdapter(int).validate_python(data["version"])
    whole = {name: _whole(data.get(name), section_type) for name, section_type in _SECTION_TYPES.items()}
    return FleetParts(version=version, escalation=escalation, **sections, **whole)


def _whole(raw: Any, section_type: type) -> Any:
    """A whole section validated on its own; None when absent or invalid."""
    if raw is None:
        return None
    try:
        return section_type.model_validate(raw)
    except ValidationError:
        return None


def _section(raw_items: list[Any], adapter: TypeAdapter) -> Section:
    items, invalid_names = [], []
    for position, raw in enumerate(raw_items):
        try:
            items.append((position, adapter.validate_python(raw)))
        except ValidationError:
            name = raw.get("name") if isinstance(raw, dict) else None
            if isinstance(name, str):
                invalid_names.append((position, name))
    return Section(tuple(items), tuple(invalid_names))
