"""How a clock skew between hosts is said (the skewed lab host is tests/test_clock_skew.py)."""

from __future__ import annotations

from hotspare.planning import host_clocks


def test_skew_sentences():
    assert (
        host_clocks.skew_sentence("production", "prod-east", 1199.6)
        == "production prod-east's clock is 20 min ahead of the orchestrator's"
    )
    assert (
        host_clocks.skew_sentence("storage", "vault", -3 * 3600 - 300)
        == "storage vault's clock is 3 h 5 min behind the orchestrator's"
    )
    assert "agrees" in host_clocks.skew_sentence("production", "p", 12)
    assert host_clocks.parse_clock("x\nclock=1700000000.5\n") == 1700000000.5
    assert host_clocks.parse_clock("clock=garbage") is None
