"""The facility status from inventory rows alone: a lost production is named before a mirror
(the live runs of a facility failover are tests/test_facility_live_runs.py)."""

from __future__ import annotations


def test_status_names_a_lost_production_before_a_mirror():
    from types import SimpleNamespace

    from hotspare.commands.facility_commands import protection_sentence
    from hotspare.inventory.models import ServerRow, ServiceRow
    from hotspare.status import _protection

    def standing(state, production, production_facility, mirror, mirror_facility):
        return SimpleNamespace(
            service="app1",
            state=state,
            production=production,
            production_facility=production_facility,
            mirror=mirror,
            mirror_facility=mirror_facility,
            previous_production=None,
            previous_production_facility=None,
        )

    # Production and mirror both in the lost facility: the production is what is named.
    both = protection_sentence(standing("protected", "p1", "east", "m1", "east"), "east", "lost")
    assert both.startswith("production p1 lost with facility east") and "unprotected" not in both
    moving = protection_sentence(standing("failing-over", "p1", "east", "m1", "west"), "east", "lost")
    assert moving.startswith("failing over: production p1 in facility east lost")
    # A mirror there, production elsewhere: unprotected, and only when the facility is lost.
    assert protection_sentence(standing("unprotected", "p2", "west", "m2", "east"), "east", "lost").startswith(
        "unprotected: mirror facility east lost (m2)"
    )
    failed_reprotect = protection_sentence(standing("unprotected", "p2", "west", "m2", "east"), "east", "up")
    assert "lost" not in failed_reprotect and "a reprotect failed" in failed_reprotect
    assert protection_sentence(standing("protected", "p2", "west", "m2", "east"), "east", "up") == "protected"

    servers = {
        "p1": ServerRow(name="p1", facility="east", address="10.0.0.1", state="failed", state_reason="facility east lost"),
        "m1": ServerRow(name="m1", facility="east", address="10.0.0.2", state="failed", state_reason="facility east lost"),
    }
    service = ServiceRow(name="app1", active_server="p1", mirror_server="m1", state="failing-over")
    assert _protection(service, servers) == "failing-over: production p1 lost (facility east lost)"
    servers["p1"] = ServerRow(name="p1", facility="west", address="10.0.0.1", state="ok")
    service.state = "unprotected"
    assert _protection(service, servers) == "unprotected: mirror facility east lost"
