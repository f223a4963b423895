"""Deployments of the backup runbooks, gathered by ``deployments/serve.py``.

Schedules come from each service's ``backup`` section (cron, in the fleet's time zone); the
rebuild is on demand only (it pauses for approval), and temporary logins are checked for
expiry every 15 minutes.
"""

from __future__ import annotations

EXPIRY_CRON = "*/15 * * * *"


def backup_deployments(fleet_defaults, fleet=None) -> list:
    """``flow.to_deployment`` objects: per service when ``fleet`` is given, else one for all."""
    from flows.backup import backup, backup_check
    from flows.rebuild import expire_temporary_accounts, rebuild
    from flows.restore_proof import restore_proof
    from prefect.schedules import Cron

    from hotspare.fleet.schema import Backup

    timezone = fleet_defaults.timezone
    deployments = []
    services = [service for service in (fleet.services if fleet else []) if service.backup is not None]
    if services:
        for service in services:
            parameters = {"service": service.name}
            deployments += [
                backup.to_deployment(name=f"backup-{service.name}", schedule=Cron(service.backup.schedule, timezone=timezone),
                                     parameters=parameters),
                backup_check.to_deployment(name=f"backup-check-{service.name}", schedule=Cron(service.backup.check_schedule, timezone=timezone), parameters=parameters),
                restore_proof.to_deployment(name=f"restore-proof-{service.name}", schedule=Cron(service.backup.restore_proof_schedule, timezone=timezone), parameters=parameters),
            ]
    else:
        defaults = Backup(password_block="unused")
        deployments += [
            backup.to_deployment(name="backup-all", schedule=Cron(defaults.schedule, timezone=timezone)),
            backup_check.to_deployment(name="backup-check-all", schedule=Cron(defaults.check_schedule, timezone=timezone)),
            restore_proof.to_deployment(name="restore-proof-all", schedule=Cron(defaults.restore_proof_schedule, timezone=timezone)),
        ]
    deployments += [
        expire_temporary_accounts.to_deployment(name="expire-temporary-accounts", schedule=Cron(EXPIRY_CRON, timezone=timezone)),
        rebuild.to_deployment(name="rebuild"),
    ]
    return deployments


def deployments_for(fleet) -> list:
    """This module's deployments for ``fleet`` (gathered by ``deployments/serve.py``)."""
    return backup_deployments(fleet.defaults, fleet)
