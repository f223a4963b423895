"""One service's facts as a runbook resolved them at its start, handed to every task it runs.

A runbook loads the fleet once and hands ``ServiceContext`` to its tasks, so no task turns a
service's name back into facts by reading the inventory again: the whole run acts on one
version of the fleet (a ``fleet load`` in the middle of a failover changes nothing it does), and
an undo step works with the inventory unreachable.
"""

from __future__ import annotations

from dataclasses import dataclass

from hotspare.fleet.schema import Fleet, Server, Service


@dataclass(frozen=True)
class ServiceContext:
    """The fleet a run loaded and the service it acts on, taken from it."""

    fleet: Fleet
    spec: Service

    @classmethod
    def of(cls, fleet: Fleet, service: str) -> ServiceContext:
        """The context of ``service`` in ``fleet``; a name the fleet lacks is the fleet's own error."""
        return cls(fleet, fleet.service(service))

    @property
    def name(self) -> str:
        return self.spec.name

    def server(self, name: str) -> Server:
        return self.fleet.server(name)

    def address_of(self, name: str) -> str:
        return self.fleet.server(name).address
