"""Deployments of the backup runbooks, gathered by ``deployments/serve.py``.

Schedules come from each service's ``backup`` section (cron, in the fleet's time zone); the
rebuild is on demand only (it pauses for approval), and temporary logins are checked for
expiry every 15 minutes.
"""

from __future__ import annotations

EXPIRY_CRON = "*/15 * * * *"


def backup_deployments(fleet_defaults, fleet=None) -> list:
    """``flow.to_deployment`` objects: per service when ``fleet`` is given, else one for all."""
    from prefect.schedules import Cron

    from flows.backup import backup, backup_check
    from flows.rebuild import expire_temporary_accounts, rebuild
    from flows.restore_proof import restore_proof
    from hotspare.fleet.schema import Backup

    timezone = fleet_defaults.timezone
    deployments = []
    services = [service for service in (fleet.services if fleet else []) if service.backup is not None]
    if services:
        for service in services:
            parameters = {"service": service.name}
            deployments += [
                backup.to_deployment(
                    name=f"backup-{service.name}",
                    schedule=Cron(service.backup.schedule, timezone=timezone),
                    parameters=parameters,
                    description=f"Back {service.name} up to its storage host "
                    f"(restic, append-only) and apply its retention; at {service.backup.schedule}.",
                ),
                backup_check.to_deployment(
                    name=f"backup-check-{service.name}",
                    schedule=Cron(service.backup.check_schedule, timezone=timezone),
                    parameters=parameters,
                    description=f"Read and check the next slice of {service.name}'s backup repository.",
                ),
                restore_proof.to_deployment(
                    name=f"restore-proof-{service.name}",
                    schedule=Cron(service.backup.restore_proof_schedule, timezone=timezone),
                    parameters=parameters,
                    description=f"Restore {service.name}'s newest backup and compare it byte for byte with its manifest.",
                ),
            ]
    else:
        defaults = Backup(password_block="unused")
        deployments += [
            backup.to_deployment(
                name="backup-all",
                schedule=Cron(defaults.schedule, timezone=timezone),
                description="Back every service up to its storage host and apply retention.",
            ),
            backup_check.to_deployment(
                name="backup-check-all",
                schedule=Cron(defaults.check_schedule, timezone=timezone),
                description="Read and check the next slice of every backup repository.",
            ),
            restore_proof.to_deployment(
                name="restore-proof-all",
                schedule=Cron(defaults.restore_proof_schedule, timezone=timezone),
                description="Restore every service's newest backup and compare it with its manifest.",
            ),
        ]
    deployments += [
        expire_temporary_accounts.to_deployment(
            name="expire-temporary-accounts",
            schedule=Cron(EXPIRY_CRON, timezone=timezone),
            description="Remove the temporary logins a rebuild handed out once they expire (every 15 minutes).",
        ),
        rebuild.to_deployment(
            name="rebuild",
            description="Production and mirror both lost: rebuild a service on a standby from its backups; pauses for approval.",
        ),
    ]
    return deployments


def deployments_for(fleet) -> list:
    """This module's deployments for ``fleet`` (gathered by ``deployments/serve.py``)."""
    return backup_deployments(fleet.defaults, fleet)
