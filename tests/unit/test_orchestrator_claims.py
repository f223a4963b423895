"""Which orchestrator acts, decided from the fleet marker alone: claims, refusals, takeovers and
the marker's TXT strings (two orchestrators on one lab are tests/test_orchestrator.py)."""

from __future__ import annotations

from hotspare.planning.orchestrator import (
    Identity,
    Marker,
    decide,
    marker_zone,
    parse_marker,
    record_name,
)

ME = Identity("11111111-aaaa", "ops@control:inventory")


OTHER = Marker("fleet-1", "22222222-bbbb", 3, "demo@laptop:/root/.hotspare/inventory.db", "2026-01-01T00:00:00Z")


def test_the_first_orchestrator_claims_a_fleet_nobody_holds():
    decision = decide(ME, None, new_fleet_id="fleet-9", now="t")
    assert decision.kind == "claim"
    assert decision.new_marker == Marker("fleet-9", ME.orchestrator_id, 1, ME.name, "t")
    assert decision.expected is None  # compare-and-swap against "no record"


def test_a_second_orchestrator_refuses_and_names_the_holder():
    decision = decide(ME, OTHER)
    assert decision.kind == "refuse"
    assert OTHER.name in decision.sentence and "epoch 3" in decision.sentence
    assert "hotspare fleet claim --takeover" in decision.sentence
    assert decide(ME, OTHER, read_only=True).kind == "warn"


def test_a_takeover_takes_the_next_epoch_and_keeps_the_fleet_id():
    decision = decide(ME, OTHER, takeover=True, now="t")
    assert decision.kind == "claim" and decision.expected == OTHER
    assert (decision.new_marker.fleet_id, decision.new_marker.epoch, decision.new_marker.orchestrator_id) == (
        "fleet-1",
        4,
        ME.orchestrator_id,
    )


def test_without_the_marker_only_an_orchestrator_that_held_the_fleet_acts():
    assert decide(ME, None, reachable=False).kind == "refuse"
    held = Identity(ME.orchestrator_id, ME.name, "fleet-1", 2)
    assert decide(held, None, reachable=False).kind == "act"
    taken_over = Identity(ME.orchestrator_id, ME.name, "fleet-1", 2, lost_to=OTHER.name)
    assert decide(taken_over, None, reachable=False).kind == "refuse"


def test_the_marker_round_trips_through_its_txt_strings_and_lives_in_the_first_zone():
    assert parse_marker(OTHER.strings()) == Marker(
        OTHER.fleet_id, OTHER.orchestrator_id, 3, "demo@laptop:/root/.hotspare/inventory.db", OTHER.since
    )
    assert parse_marker(["v=spf1 -all"]) is None
    assert marker_zone(["b.example.", "a.example"]) == "a.example"
    assert record_name("lab.test.") == "_hotspare-orchestrator.lab.test"
