"""The inventory's PostgreSQL stops in the middle of a planned switchover (the real server the
test session runs the inventory on).

The switchover's undo uses only what the run holds (the fleet it loaded at its start): the app
runs again where DNS points, checked before the run says so; the command exits with the
inventory's own code and one message; the run row it could not close is closed, with the
reason, by the next run once the database answers again, and the service is no longer
"failing-over" on record.
"""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest
from test_failover import SERVICE, address, dns_answer, through_dns

from hotspare.inventory import copies
from hotspare.probes import http_get_via_dns

from lab_helpers import poll

pytestmark = pytest.mark.lab


@pytest.fixture
def inventory_server(fleet, monkeypatch):
    """The session's PostgreSQL holding the inventory; running again after the test."""
    if not os.environ.get("HOTSPARE_DB_URL", "").startswith("postgresql"):
        pytest.skip("the session inventory is SQLite (HOTSPARE_TEST_DB=sqlite): this test stops its PostgreSQL")
    from postgres_helpers import session_postgres

    monkeypatch.setenv("HOTSPARE_LEASE_SECONDS", "6")  # the interrupted run's lock frees itself sooner
    server = session_postgres()
    yield server
    if not server.running():
        server.start()


def _answers_at(lab_env: dict, where: str) -> bool:
    spec = lab_env["services"][SERVICE]
    try:
        status, _body, _used = http_get_via_dns(
            f"http://{spec['dns_name']}:{spec['app_port']}/health.txt", lambda _name: [where], timeout=1
        )
    except OSError:
        return False
    return status == 200


def _stop_now(server) -> None:
    """Fast shutdown (SIGINT: open sessions end at once, as when the database host dies)."""
    os.kill(server.daemon.pid, signal.SIGINT)
    server.stop()  # reaps it by its recorded PID


@pytest.mark.timeout(600)
def test_inventory_outage_during_a_switchover_leaves_the_app_serving_where_dns_points(inventory_server, lab, lab_env, capsys):
    from sqlmodel import select

    from flows.replicate import replicate_service
    from hotspare.cli import main
    from hotspare.inventory.db import session
    from hotspare.inventory.models import RunRow, StepRow

    production = address(lab_env, "production")
    row = copies.service_row(SERVICE)
    assert (row.state, row.active_server) == ("protected", "prod-east") and dns_answer(lab_env) == [production]
    assert _answers_at(lab_env, production)
    capsys.readouterr()

    with ThreadPoolExecutor(1) as pool:
        command = pool.submit(main, ["failover", SERVICE, "--planned", "--yes"])
        poll(
            lambda: not _answers_at(lab_env, production) or command.done(),
            120,
            "the switchover to stop the app on prod-east for its final sync",
        )
        assert not command.done(), "the switchover ended before the app was stopped"
        _stop_now(inventory_server)
        code = command.result(timeout=300)
    message = capsys.readouterr().err

    # Users: DNS never moved, and the app answers there again.
    assert code == 10, message
    assert dns_answer(lab_env) == [production]
    assert through_dns(lab_env, "health.txt")[:3:2] == (200, production)
    assert "inventory unreachable: the inventory at postgresql" in message
    assert "the app runs on prod-east again and answers its health check" in message
    assert "unexpected error" not in message and "Traceback" not in message

    # The database answers again: the next run closes what the interrupted one could not record.
    inventory_server.start()
    with session() as db:
        [open_run] = db.exec(
            select(RunRow).where(RunRow.kind == "failover", RunRow.service == SERVICE, RunRow.outcome == "running")
        ).all()
    poll(
        lambda: (
            copies.service_row(SERVICE).lock_holder is None
            or copies.service_row(SERVICE).lock_expires is not None
            and _expired(copies.service_row(SERVICE).lock_expires)
        ),
        30,
        "the interrupted run's lease to expire",
    )
    assert replicate_service(SERVICE)["outcome"] == "ok"
    with session() as db:
        closed = db.get(RunRow, open_run.id)
        steps = db.exec(select(StepRow).where(StepRow.run_id == open_run.id)).all()
    assert closed.outcome == "failed" and "is unreachable" in closed.summary and "recorded late" in closed.summary
    assert closed.ended_at is not None and not [step.name for step in steps if step.outcome == "running"]
    row = copies.service_row(SERVICE)
    assert (row.state, row.active_server, row.failover) == ("protected", "prod-east", None)


def _expired(moment) -> bool:
    from hotspare.inventory.models import as_utc, utcnow

    return as_utc(moment) <= utcnow()
