"""The inventory on a real PostgreSQL (started by the session): migrations from empty and from
an old schema, the service-lock tests of test_locks.py (one of them kills a holding process), and
connections racing for one lock.

Runs in every test session (a few seconds), so SQLite and PostgreSQL are both tested always.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import create_engine, inspect, text

# The lock tests of the SQLite suite, collected here again with this module's `inventory`.
from test_locks import (
    SERVICE,
    test_a_failover_takes_over_routine_work_whose_next_step_then_refuses,
    test_a_killed_holders_lock_frees_itself_within_the_lease,
    test_busy_names_the_holder_since_when_and_what_to_do,
    test_each_acquisition_gets_a_higher_token_and_release_frees,
    test_renewal_keeps_a_live_holders_lock_past_its_lease,
    test_unlock_needs_the_holders_name,
)

from hotspare.inventory import db as inventory_db
from hotspare.inventory import locks
from hotspare.inventory.db import session
from hotspare.inventory.models import RunRow, ServiceRow, StepRow, as_utc

from postgres_helpers import fresh_database


@pytest.fixture(scope="module")
def postgres_url() -> str:
    return fresh_database("lock_tests")


@pytest.fixture
def inventory(postgres_url, monkeypatch):
    """The PostgreSQL inventory holding one unlocked service, with a short lease."""
    monkeypatch.setenv("HOTSPARE_DB_URL", postgres_url)
    monkeypatch.setenv("HOTSPARE_LEASE_SECONDS", "2")
    with session() as database:
        database.exec(text("DELETE FROM service"))
        database.add(
            ServiceRow(name=SERVICE, spec={}, planned_production="p", planned_mirror="m", active_server="p", mirror_server="m")
        )
    return postgres_url


def test_migrations_create_the_schema_and_are_idempotent(monkeypatch):
    url = fresh_database("migrations_fresh")
    engine = create_engine(url)
    assert inventory_db.migrate(engine) == inventory_db.MIGRATIONS[-1][0]
    assert inventory_db.migrate(engine) == inventory_db.MIGRATIONS[-1][0]  # nothing left to do
    tables = set(inspect(engine).get_table_names())
    assert {"service", "server", "copy", "run", "step", "schema_version", "fleet_document"} <= tables
    # A run with steps, JSON details and times round-trips; times come back as the same UTC moment.
    monkeypatch.setenv("HOTSPARE_DB_URL", url)
    with session() as database:
        run = RunRow(kind="failover", service="shop", details={"copy": "c1", "services": ["a", "b"]})
        database.add(run)
        database.flush()
        database.add(StepRow(run_id=run.id, name="dns cutover"))
        run_id, started = run.id, run.started_at
    with session() as database:
        stored = database.get(RunRow, run_id)
        assert stored.details == {"copy": "c1", "services": ["a", "b"]}
        assert as_utc(stored.started_at) == started
    engine.dispose()


def test_an_old_inventory_is_upgraded_in_place():
    """A version-1 inventory (no fencing columns) keeps its rows and gains the columns."""
    url = fresh_database("migrations_old")
    engine = create_engine(url)
    with engine.begin() as connection:
        inventory_db.MIGRATIONS[0][1](connection)
        connection.execute(text("ALTER TABLE service DROP COLUMN lock_token, DROP COLUMN lock_since"))
        connection.execute(text("INSERT INTO schema_version (id, version) VALUES (1, 1)"))
        connection.execute(
            text(
                "INSERT INTO service (name, spec, planned_production, planned_mirror, retired, "
                "active_server, state, updated_at) VALUES ('kept', '{}', 'p', 'm', false, 'p', "
                "'protected', now())"
            )
        )
    assert inventory_db.migrate(engine) == inventory_db.MIGRATIONS[-1][0]
    columns = {column["name"] for column in inspect(engine).get_columns("service")}
    assert {"lock_token", "lock_since"} <= columns
    with engine.connect() as connection:
        assert connection.execute(text("SELECT name FROM service")).scalars().all() == ["kept"]
    engine.dispose()


RACERS = 8


def test_connections_racing_for_one_lock_exactly_one_wins(inventory, monkeypatch):
    """Each racer has its own database connection, as processes on several machines would:
    PostgreSQL's row lock and the conditional UPDATE let exactly one through."""
    monkeypatch.setenv("HOTSPARE_LEASE_SECONDS", "120")  # the winner's lease outlasts the race
    start = threading.Barrier(RACERS)

    def race(number: int) -> str:
        locks.holder_of(SERVICE)  # connected before the start
        start.wait(timeout=60)
        try:
            return f"won {locks.acquire(SERVICE, f'failover:{number}', preempt=locks.PREEMPTIBLE).token}"
        except locks.ServiceBusy:
            return "busy"

    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        answers = list(pool.map(race, range(RACERS)))
    assert sum(answer.startswith("won") for answer in answers) == 1, answers
    assert answers.count("busy") == RACERS - 1
    assert locks.holder_of(SERVICE).startswith("failover:")
