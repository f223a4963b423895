"""PostgreSQL users by role for a shared inventory: what each may do, as SQL statements.

The control site, every facility's worker, read-only reporting and Prefect's server each log in
as their own user; none is a superuser (a superuser can read any database, including Prefect's
with the blocks' encryption key, and run programs on the database machine), and only Prefect's
own user may connect to Prefect's database. PostgreSQL itself enforces every line below.

- **control** owns the inventory database and so its tables (it runs the migrations); it
  loads the fleet and claims the orchestrator marker.
- **worker** (a facility's worker and its flow runs) reads every table and writes the run
  records (runs, steps, copies, backups, drills, incidents, pages, notices …), but on the
  tables that define the fleet only the columns its runs change: a service's active server,
  state and lock, a server's and facility's state, the orchestrator row's last check. It
  cannot load another fleet, rename or re-identify the orchestrator, change a service's
  specification or planned servers, alter or drop a table, or truncate one.
- **reporting** reads the inventory and writes nothing.
- **prefect** owns Prefect's database and nothing else.

Tables created later (a new subsystem's rows, created on start by the control user) get the
worker's and reporting's rights through default privileges, so a new table needs no grant here;
a new *fleet-defining* table must be added to ``FLEET_COLUMNS``.
"""

from __future__ import annotations

from dataclasses import dataclass

CONTROL = "hotspare_control"
WORKER = "hotspare_worker"
REPORTING = "hotspare_reporting"
PREFECT = "hotspare_prefect"
ROLES = (CONTROL, WORKER, REPORTING, PREFECT)
INVENTORY_DATABASE = "inventory"
PREFECT_DATABASE = "prefect"

# Tables that describe the fleet (written by `fleet load`, the control site): a worker may update
# only these columns of them, and inserts or deletes nothing. ``None``: not one column.
FLEET_COLUMNS: dict[str, tuple[str, ...] | None] = {
    "fleet_document": None,
    "schema_version": None,
    "facility": ("status",),
    "server": ("state", "state_reason"),
    "service": (
        "active_server",
        "mirror_server",
        "state",
        "current_copy_id",
        "failover",
        "lock_holder",
        "lock_expires",
        "lock_since",
        "lock_token",
        "updated_at",
    ),
    "orchestrator_identity": ("fleet_id", "epoch", "lost_to", "checked_at"),
    # not the fleet, but the control site's alone: an approval from the phone, which the gate of a
    # run on any worker trusts (``inventory/approvals.py``)
    "approval_decision": None,
}


@dataclass(frozen=True)
class RolePlan:
    """Statements for the cluster (run in any database) and for each database, in order."""

    cluster: tuple[str, ...]
    inventory: tuple[str, ...]
    prefect: tuple[str, ...]


def ident(name: str) -> str:
    """A quoted SQL identifier; names here are fixed or table names read from the catalog."""
    if not name or "\x00" in name:
        raise ValueError(f"not a usable SQL identifier: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def cluster_statements(existing_roles: set[str]) -> tuple[str, ...]:
    """Create the missing roles (login, no superuser, no role or database creation) and keep
    ``PUBLIC`` out of both databases: only the roles granted below may connect."""
    statements = [f"CREATE ROLE {ident(role)} LOGIN" for role in ROLES if role not in existing_roles]
    statements += [f"ALTER ROLE {ident(role)} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS" for role in ROLES]
    statements += [
        f"ALTER DATABASE {ident(INVENTORY_DATABASE)} OWNER TO {ident(CONTROL)}",
        f"ALTER DATABASE {ident(PREFECT_DATABASE)} OWNER TO {ident(PREFECT)}",
        f"REVOKE ALL ON DATABASE {ident(INVENTORY_DATABASE)} FROM PUBLIC",
        f"REVOKE ALL ON DATABASE {ident(PREFECT_DATABASE)} FROM PUBLIC",
        "REVOKE ALL ON DATABASE postgres FROM PUBLIC",
        f"GRANT CONNECT ON DATABASE {ident(INVENTORY_DATABASE)} TO {ident(WORKER)}, {ident(REPORTING)}",
    ]
    return tuple(statements)


def inventory_statements(tables: list[str]) -> tuple[str, ...]:
    """Grants in the inventory database on ``tables`` (its existing tables, owned by control)."""
    worker, reporting, control = ident(WORKER), ident(REPORTING), ident(CONTROL)
    statements = [
        "REVOKE ALL ON SCHEMA public FROM PUBLIC",
        f"GRANT USAGE ON SCHEMA public TO {worker}, {reporting}",
        # what the control user creates from now on
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {control} IN SCHEMA public GRANT SELECT ON TABLES TO {reporting}",
        (
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {control} IN SCHEMA public "
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {worker}"
        ),
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {control} IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {worker}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {worker}",
    ]
    for table in sorted(tables):
        name = ident(table)
        statements += [
            f"REVOKE ALL ON TABLE {name} FROM {worker}, {reporting}",
            f"GRANT SELECT ON TABLE {name} TO {worker}, {reporting}",
        ]
        writable = FLEET_COLUMNS.get(table, ())
        if table not in FLEET_COLUMNS:
            statements.append(f"GRANT INSERT, UPDATE, DELETE ON TABLE {name} TO {worker}")
        elif writable:
            columns = ", ".join(ident(column) for column in writable)
            statements.append(f"GRANT UPDATE ({columns}) ON TABLE {name} TO {worker}")
    return tuple(statements)


def prefect_statements(tables: list[str], sequences: list[str]) -> tuple[str, ...]:
    """Prefect's database: its schema and every object in it belong to Prefect's user (a cluster
    made before the roles existed has them owned by the superuser)."""
    owner = ident(PREFECT)
    return (
        f"ALTER SCHEMA public OWNER TO {owner}",
        *(f"ALTER TABLE {ident(table)} OWNER TO {owner}" for table in sorted(tables)),
        *(f"ALTER SEQUENCE {ident(sequence)} OWNER TO {owner}" for sequence in sorted(sequences)),
    )
