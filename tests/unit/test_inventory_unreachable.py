"""An inventory that does not answer, without the lab: real SQLite files and a real closed port.

A command exits with the inventory's own code and one message; a refused statement is not an
outage; a run's outcome it could not record is kept on this machine and written, with the
reason, by the next run once the database answers again.
"""

from __future__ import annotations

import stat

import pytest
from sqlalchemy import text

from hotspare.inventory import db as inventory_db
from hotspare.inventory import late_outcomes, runs
from hotspare.inventory.db import InventoryUnreachable, session
from hotspare.inventory.models import RunRow, ServiceRow, StepRow


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOTSPARE_HOME", str(tmp_path / "home"))
    return tmp_path


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("where", ["sqlite-folder-gone", "postgresql-port-closed"])
def test_a_command_with_its_inventory_gone_exits_with_its_own_code_and_one_message(home, monkeypatch, capsys, where):
    from hotspare.cli import main

    url = (
        f"sqlite:///{home / 'gone' / 'inventory.db'}"
        if where.startswith("sqlite")
        else f"postgresql+psycopg://hotspare:secret-word@127.0.0.1:{_free_port()}/inventory?connect_timeout=3"
    )
    monkeypatch.setenv("HOTSPARE_DB_URL", url)
    assert main(["status", "--json"]) == 10
    message = capsys.readouterr().err
    assert message.startswith("hotspare status: inventory unreachable: the inventory at "), message
    assert "start the inventory's database or restore the path to it" in message and "(exit 10)" in message
    assert "secret-word" not in message and "unexpected error" not in message and "Traceback" not in message


def test_a_refused_statement_is_not_an_outage(home, monkeypatch):
    monkeypatch.setenv("HOTSPARE_DB_URL", f"sqlite:///{home / 'inventory.db'}")
    with pytest.raises(Exception) as caught, session() as db:
        db.exec(text("SELECT * FROM no_such_table"))
    assert not isinstance(caught.value, InventoryUnreachable) and "no_such_table" in str(caught.value)


def test_an_outcome_kept_while_unreachable_is_written_by_the_next_run(home, monkeypatch):
    folder = home / "inventory"
    folder.mkdir()
    url = f"sqlite:///{folder / 'inventory.db'}"
    monkeypatch.setenv("HOTSPARE_DB_URL", url)
    run_id = runs.start_run("failover", "shop")
    with session() as db:
        db.add(
            ServiceRow(
                name="shop",
                spec={},
                planned_production="p",
                planned_mirror="m",
                active_server="p",
                mirror_server="m",
                state="failing-over",
                failover={"run_id": run_id, "target": "m"},
            )
        )
        db.add(StepRow(run_id=run_id, name="final sync and verify"))

    _outage(url, folder, home / "away")  # the database goes away under the run
    with pytest.raises(InventoryUnreachable):
        runs.finish_run(run_id, "failed", "shop: failover stopped: the inventory is unreachable")
    late_outcomes.keep(run_id, failover_stopped="shop")
    [kept] = list((home / "home" / "late-outcomes").rglob("*.json"))
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    (home / "away").rename(folder)  # it answers again

    runs.start_run("replicate", "shop")
    with session() as db:
        run = db.get(RunRow, run_id)
        step = db.exec(text("SELECT outcome FROM step WHERE run_id = :run"), params={"run": run_id}).one()
        service = db.get(ServiceRow, "shop")
    assert run.outcome == "failed" and run.summary.startswith("shop: failover stopped: the inventory is unreachable")
    assert "recorded late" in run.summary and run.ended_at is not None
    assert step[0] == "interrupted"
    assert (service.state, service.failover) == ("protected", None)
    assert not kept.exists()


def _outage(url: str, source, destination) -> None:
    """Move the inventory's folder away (SQLite then cannot open it), dropping the pooled
    connections (an open SQLite file would follow the move)."""
    inventory_db._engine_for(url).dispose()
    inventory_db._engine_for.cache_clear()
    source.rename(destination)
