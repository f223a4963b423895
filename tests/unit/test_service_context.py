"""Facts reach tasks one way: a runbook resolves the fleet once and hands it (or one service's
``ServiceContext``) to its tasks; the failover and drill tasks never read the fleet again."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from hotspare.fleet import parse_fleet
from hotspare.fleet.context import ServiceContext
from hotspare.fleet.sample import sample_fleet_file

ROOT = Path(__file__).resolve().parents[2]
HANDED_FACTS = ("tasks/failover.py", "tasks/drill.py", "flows/failover_undo.py")


def calls_of(path: Path, name: str) -> list[int]:
    """Lines in ``path`` that call a function named ``name`` (bare or as an attribute)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if called == name:
                lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("module", HANDED_FACTS)
def test_steps_never_read_the_fleet_again(module):
    lines = calls_of(ROOT / module, "loaded_fleet")
    assert lines == [], (
        f"{module} reads the fleet from the inventory at line(s) {lines}: take the fleet or the "
        "ServiceContext the runbook resolved at its start as a parameter instead"
    )


def test_the_failover_runbook_resolves_the_fleet_once():
    assert len(calls_of(ROOT / "flows/failover.py", "loaded_fleet")) == 1


def test_a_context_holds_the_service_taken_from_its_fleet():
    fleet = parse_fleet(sample_fleet_file(), "sample.yaml")
    spec = fleet.services[0]
    context = ServiceContext.of(fleet, spec.name)
    assert context.spec is spec and context.name == spec.name
    assert context.address_of(spec.production) == fleet.server(spec.production).address


def test_a_context_of_an_unknown_service_is_the_fleets_own_error():
    fleet = parse_fleet(sample_fleet_file(), "sample.yaml")
    with pytest.raises(KeyError, match="no service .no-such-service."):
        ServiceContext.of(fleet, "no-such-service")
