"""One orchestrator per fleet: a second orchestrator (its own inventory) pointed at the lab's hosts
refuses to act and to page, naming the one that holds the fleet; a deliberate takeover moves the
fleet to it with the next epoch, and then the first one refuses.

The decisions are pure (``hotspare/planning/orchestrator.py``, tests/unit/test_orchestrator_claims.py);
the lab tests use the session lab's real DNS server (the marker is a TXT record in lab.test, changed by a
TSIG-signed compare-and-swap) and its real phone endpoint.
"""

from __future__ import annotations

import pytest

from hotspare.planning.orchestrator import (
    Marker,
    parse_marker,
    record_name,
)

# ----- the lab: two orchestrators on one fleet --------------------------------------------------


@pytest.fixture
def second_inventory(fleet, tmp_path, monkeypatch):
    """Switch this process to a second orchestrator: an inventory of its own holding the same fleet.
    Yields the first one's name and a function that switches back to it."""
    import os

    from tasks.orchestrator import forget_checks

    first, session_url = _identity_name(), os.environ.get("HOTSPARE_DB_URL")

    def back_to_first() -> None:
        if session_url is None:
            monkeypatch.delenv("HOTSPARE_DB_URL", raising=False)
        else:
            monkeypatch.setenv("HOTSPARE_DB_URL", session_url)
        forget_checks()

    monkeypatch.setenv("HOTSPARE_DB_URL", f"sqlite:///{tmp_path / 'second-inventory.db'}")
    forget_checks()
    yield first, back_to_first
    back_to_first()


def _identity_name() -> str:
    from hotspare.inventory.orchestrator import identity

    return identity().name


def _marker(lab_env) -> Marker:
    from hotspare.adapters.dns import AuthoritativeServer, read_txt

    server = AuthoritativeServer(lab_env["zone"], lab_env["dns"]["address"], lab_env["dns"]["port"])
    return next(parse_marker(strings) for strings in read_txt(server, record_name(lab_env["zone"])))


@pytest.mark.lab
def test_a_second_orchestrator_on_the_same_lab_refuses_to_act_and_to_page(second_inventory, lab, lab_env, capsys):
    from test_failover import SERVICE, address, dns_answer

    from flows.health import health
    from flows.incident import page
    from hotspare.cli import main
    from hotspare.inventory import incidents
    from hotspare.lab.phone import PhoneControl
    from tasks.orchestrator import NotOrchestrator

    first, _back = second_inventory
    holder = _marker(lab_env)
    assert holder.name == first  # the session's inventory claimed the fleet when it loaded it

    assert main(["fleet", "load", lab_env["fleet_file"]]) == 0  # loading is not acting: it warns
    loaded = capsys.readouterr()
    assert f"does not hold the fleet: {first}" in loaded.err

    assert main(["status"]) == 0  # a read-only look warns
    assert f"warning: this orchestrator ({_identity_name()}) does not hold the fleet: {first}" in capsys.readouterr().err

    assert main(["failover", SERVICE, "--yes"]) == 3
    refused = capsys.readouterr().err
    assert "refused" in refused and first in refused and "hotspare fleet claim --takeover" in refused
    assert "Traceback" not in refused
    assert dns_answer(lab_env) == [address(lab_env, "production")]  # nothing moved

    with pytest.raises(NotOrchestrator, match="does not hold the fleet"):
        health(rounds=1)

    phone = PhoneControl(lab_env)
    calls_before = len(phone.requests("call")) + len(phone.requests("sms"))
    opening = incidents.open_incident(
        1, "high", "second orchestrator test", servers=["prod-east"], dedup_key="test-second-orchestrator"
    )
    outcome = page(opening.incident_id, poll_seconds=0.2, max_minutes=0.2)
    assert outcome["outcome"] == "refused" and first in outcome["reason"]
    assert len(phone.requests("call")) + len(phone.requests("sms")) == calls_before
    assert _marker(lab_env) == holder  # the marker is untouched


@pytest.mark.lab
def test_a_deliberate_takeover_moves_the_fleet_and_the_first_orchestrator_then_refuses(second_inventory, lab_env, capsys):
    from hotspare.cli import main
    from tasks.orchestrator import NotOrchestrator, require_orchestrator

    first, back_to_first = second_inventory
    before = _marker(lab_env)
    assert main(["fleet", "load", lab_env["fleet_file"]]) == 0
    second = _identity_name()
    try:
        assert main(["fleet", "claim"]) == 3  # without --takeover: refused, naming the holder
        assert first in capsys.readouterr().err
        assert main(["fleet", "claim", "--takeover"]) == 0
        assert "takes the fleet over from" in capsys.readouterr().out
        after = _marker(lab_env)
        assert (after.name, after.epoch, after.fleet_id) == (second, before.epoch + 1, before.fleet_id)
        assert require_orchestrator(None, "replicate").kind == "act"

        back_to_first()
        with pytest.raises(NotOrchestrator, match=f"does not hold the fleet: {second}"):
            require_orchestrator(None, "replicate")
        assert require_orchestrator(None, "status", read_only=True).kind == "warn"
    finally:
        back_to_first()
        assert main(["fleet", "claim", "--takeover"]) == 0  # the session's inventory holds the fleet again
    assert _marker(lab_env).epoch == before.epoch + 2
    assert require_orchestrator(None, "replicate").kind == "act"
