"""The fleet file describing a lab: every server with its real address, pinned key, hardware,
BMC and location, the zone, the services, contacts, chains, customers and checkers.

Pure: values in, the fleet as a dict out (``building.py`` writes it as YAML).
"""

from __future__ import annotations

from hotspare.lab import phone
from hotspare.lab.topology import (
    BLOCK_NAMES,
    FACILITIES,
    HOSTS,
    MAIL_SENDER,
    SERVICES,
    SSH_PORT,
    TTL,
    ZONE,
    ServiceSpec,
    SlotLayout,
    restic_block,
)


def fleet(layout: SlotLayout, host_keys: dict[str, str], hardware: dict[str, int]) -> dict:
    """The fleet file describing this lab, in the structure of docs/fleet-example.yaml."""
    return {
        "version": 1,
        "facilities": [
            {
                "name": f.name,
                "description": f.description,
                "remote_hands": {"name": f"Remote hands {f.name}", "email": f"hands@{f.name}.lab.test", "phone": "+15550199"},
            }
            for f in FACILITIES
        ],
        "defaults": {
            "ssh_user_block": BLOCK_NAMES["ssh"],
            "rpo_hours": 12,
            "copies_to_keep": 4,
            "replication_schedule": ["0 1 * * *", "0 13 * * *"],
            "timezone": "UTC",
        },
        "servers": [
            {
                "name": host.name,
                "facility": host.facility,
                "address": layout.address(host),
                "ssh_port": SSH_PORT,
                "host_key": host_keys[host.name],
                "role": host.role,
                "hardware": dict(hardware),
            }
            for host in HOSTS
        ],
        "zones": [
            {
                "name": ZONE,
                "server": "127.0.0.1",
                "port": layout.dns_port,
                "tsig_key_block": BLOCK_NAMES["tsig"],
                "ttl": TTL,
            }
        ],
        "services": [_fleet_service(service) for service in SERVICES],
        "contacts": [
            {
                "name": "Dana Ops",
                "role": "on-call engineer",
                "phone": "+15550100",
                "email": "dana@ops.lab.test",
                "may_approve": True,
            },
            {"name": "Lee Lead", "role": "engineering lead", "phone": "+15550101", "email": "lee@ops.lab.test"},
            *phone.fleet_contacts(),
        ],
        "escalation": ["Dana Ops", "Lee Lead"],
        "incidents": phone.fleet_section(layout.slot),  # escalation chain, phone providers
        "mail": {"smtp_block": BLOCK_NAMES["smtp"], "sender": MAIL_SENDER},
        "customer_notices": customer_notices(layout),
        # Checks from three sites, so one site's outage never reads as the fleet's (health_schema.py).
        "health": {
            "checkers": [
                {"name": "control", "facility": "control", "via": "local"},
                {"name": "east", "facility": "east", "via": "standby-east"},
                {"name": "west", "facility": "west", "via": "standby-west"},
            ]
        },
    }


def customer_notices(layout: SlotLayout) -> dict:
    """Customers of app1 and app2 (one agency contact shared by both; one address that bounces,
    one the sink defers once), the emergency numbers, and the status page on web-vault."""
    from hotspare.lab.web import STATUS_FOLDER, WEB_HOST, WEB_PORT, subscriptions_port

    web_address = layout.address(next(host for host in HOSTS if host.name == WEB_HOST))
    return {
        "customers": [
            {
                "name": "acme",
                "display_name": "Acme Shop",
                "services": ["app1"],
                "contacts": [
                    {"name": "Ana Acme", "email": "ana@acme.lab.test"},
                    {"name": "Former Admin", "email": "bounce-former@acme.lab.test"},
                    {"name": "Web Agency", "email": "ops@agency.lab.test"},
                ],
            },
            {
                "name": "globex",
                "display_name": "Globex Portal",
                "services": ["app2"],
                "contacts": [
                    {"name": "Gil Globex", "email": "gil@globex.lab.test"},
                    {"name": "Globex NOC", "email": "defer-noc@globex.lab.test"},
                    {"name": "Web Agency", "email": "ops@agency.lab.test"},
                ],
            },
        ],
        "emergency_numbers": [
            {"label": "Emergency hotline (24/7)", "phone": "+1 555 0199"},
            {"label": "Operations desk", "phone": "+1 555 0100"},
        ],
        "policy": [{"category": 1, "action": "send"}, {"category": 2, "action": "approve"}, {"category": 3, "action": "none"}],
        "messages_per_second": 20,
        "status_page": {
            "server": WEB_HOST,
            "folder": STATUS_FOLDER,
            "url": f"http://{web_address}:{WEB_PORT}/",
            "subscribe_url": f"http://127.0.0.1:{subscriptions_port(layout.slot)}/",
        },
    }


def _fleet_service(service: ServiceSpec) -> dict:
    """One `services:` entry of the fleet file."""
    return {
        "name": service.name,
        "dns_name": service.dns_name,
        "zone": ZONE,
        "production": service.production,
        "mirror": service.mirror,
        "storage": service.storage,
        "data_paths": [service.data_path],
        "app_paths": [service.app_path],
        "config_paths": [service.config_path],
        "accounts": {
            "uid_min": service.uid_min,
            "uid_max": service.uid_max,
            "files": [service.accounts_file],
        },
        "pre_sync": [[f"{service.app_path}/dump-db"]],
        "activate": [[f"{service.app_path}/ctl", "start"]],
        "deactivate": [[f"{service.app_path}/ctl", "stop"]],
        "health_url": f"http://{service.dns_name}:{service.port}/health.txt",
        "app_port": service.port,
        "tier": 1,
        "rpo_hours": 12,
        "copies_to_keep": 4,
        "max_shrink": 0.5,
        "backup": {"password_block": restic_block(service.name)},
    }
