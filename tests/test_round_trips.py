"""Round trips of a replication against the real lab: the remote commands one run sends.

Counted by the SSH adapter itself (every exec channel and SFTP session it opens, per host) and
kept in the run's record; checked here on the rsync path and the shipping path.
"""

from __future__ import annotations

import pytest
from sqlmodel import select

from flows.replicate import replicate_service
from hotspare.adapters.ssh import counting
from hotspare.inventory.db import session
from hotspare.inventory.models import RunRow
from hotspare.planning import snapshot_shipping as shipping
from tasks import verification

from lab_helpers import lab_fleet_changed

SERVICE = "app1"
# One program per host per step. Production: preflight, hooks + key (+ snapshots), key removal,
# and verification's two (listing, digests). The mirror: preflight, preparation, transfer (+ the
# copy's snapshot), verification's two, finish (promote, accounts, prune): six until verification
# reads one summary per host.
MOST = {"production": 5, "mirror": 6}
# Shipping adds, on each host, the shipped data's own check (UUID chain, scrub and slice) beside
# the other paths' tree comparison (counted on each host: ``adapters/ssh.pipe``); the shipped data
# itself is not listed.
MOST_SHIPPED = {"production": 5, "mirror": 6}


@pytest.fixture(autouse=True)
def host_facts_kept(monkeypatch):
    """Host facts read by the first run are reused by the second however slow the machine: they are
    re-read once a minute (``tasks/verification.HOST_FACTS_SECONDS``), not once a run, and a
    loaded test machine can take longer than that between the two runs' checks."""
    monkeypatch.setattr(verification, "HOST_FACTS_SECONDS", 3600.0)


def replicate_counted() -> tuple[dict, list[tuple[str, str]]]:
    with counting() as sent:
        result = replicate_service(SERVICE)
    assert result["outcome"] == "ok", result
    return result, sent.commands


def recorded_count() -> dict:
    """The newest replicate run's count as its record keeps it."""
    with session() as db:
        record = db.exec(
            select(RunRow).where(RunRow.kind == "replicate", RunRow.service == SERVICE).order_by(RunRow.id.desc())
        ).first()
    return record.details["remote_commands"]


def assert_few(commands: list[tuple[str, str]], lab_env: dict, most: dict = MOST) -> None:
    service = lab_env["services"][SERVICE]
    for role in ("production", "mirror"):
        mine = [what for name, what in commands if name == service[role]]
        assert 0 < len(mine) <= most[role], f"{service[role]}: {len(mine)} commands: " + "\n".join(mine)
    recorded = recorded_count()
    assert recorded["total"] == len(commands), (recorded, commands)


def test_an_rsync_replication_sends_few_commands_per_host(fleet, lab_env):
    replicate_counted()  # a first copy (a whole-tree check) before the routine one
    _, commands = replicate_counted()
    print("\n".join(f"{host}: {what}" for host, what in commands))
    assert_few(commands, lab_env)


def test_a_shipped_replication_sends_few_commands_per_host(fleet, lab_env, tmp_path):
    def ship(data: dict) -> None:
        data.setdefault("replication", {})["copy_backend"] = shipping.SHIPPING_PREFERENCE

    with lab_fleet_changed(lab_env, tmp_path, ship):
        replicate_counted()
        result, commands = replicate_counted()
        print("\n".join(f"{host}: {what}" for host, what in commands))
        assert result["transfer"]["shipped"], result["transfer"]
        assert_few(commands, lab_env, MOST_SHIPPED)
