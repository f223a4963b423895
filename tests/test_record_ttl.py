"""The TTL a service's record stands at: short where the health policy fails it over (users'
resolvers follow within seconds), the zone's otherwise; kept by every replication."""

from __future__ import annotations

import pytest

from lab_helpers import lab_fleet_changed

pytestmark = pytest.mark.lab

SERVICE = "app2"


def record_ttl(lab_env) -> int | None:
    from hotspare.adapters import dns

    server = dns.AuthoritativeServer(lab_env["zone"], lab_env["dns"]["address"], lab_env["dns"]["port"])
    return dns.read_ttl(server, lab_env["services"][SERVICE]["dns_name"])


def test_the_policy_decides_the_standing_ttl_and_a_replication_keeps_it(fleet, lab_env, tmp_path):
    from flows.replicate import replicate_service
    from hotspare.access import loaded_fleet

    zone_ttl = fleet.zone(fleet.service(SERVICE).zone.rstrip(".")).ttl
    assert fleet.record_ttl_of(fleet.service(SERVICE)) == zone_ttl  # policy off: the zone's TTL

    def approval_for_app2(data: dict) -> None:
        data.setdefault("health", {}).setdefault("services", []).append({"name": SERVICE, "automatic_failover": "approval"})
        data["zones"][0]["failover_ttl"] = 20

    try:
        with lab_fleet_changed(lab_env, tmp_path, approval_for_app2):
            assert loaded_fleet().record_ttl_of(loaded_fleet().service(SERVICE)) == 20
            result = replicate_service(SERVICE)
            assert result["outcome"] == "ok" and result["dns_ttl"] == {"ttl": 20, "changed": True, "previous": zone_ttl}
            assert record_ttl(lab_env) == 20
            assert replicate_service(SERVICE)["dns_ttl"] == {"ttl": 20, "changed": False}  # kept, not rewritten
        back = replicate_service(SERVICE)  # the lab's own fleet again: policy off
        assert back["dns_ttl"] == {"ttl": zone_ttl, "changed": True, "previous": 20}
    finally:
        if record_ttl(lab_env) != zone_ttl:
            replicate_service(SERVICE)
    assert record_ttl(lab_env) == zone_ttl
