"""Deployments of the facility runbooks (run buttons, no schedule), gathered by ``deployments/serve.py``.

``facility-failover`` pauses for approval in the Prefect UI: type the facility plan digest shown
in the run's plan artifact. ``facility-return`` reprotects what ran in the facility.
"""

from __future__ import annotations


def deployments_for(fleet) -> list:
    """This module's deployments for ``fleet``."""
    from flows.facility import facility_failover, facility_return

    del fleet  # on demand only: no per-fleet schedule
    return [
        facility_failover.to_deployment(
            name="facility-failover",
            description="Fail every service whose production is in a facility over to its mirror; pauses for approval.",
        ),
        facility_return.to_deployment(
            name="facility-return",
            description="A lost facility is back: its former productions become mirrors; failback is offered per tier.",
        ),
    ]
