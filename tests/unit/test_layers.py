"""The dependency rule of docs/architecture.md, checked on the code: nothing imports upward.

    base (settings, fleet schema, adapters, readings) ← planning ← inventory
        ← access (connections, credential blocks) ← tasks ← flows ← deployments, CLI, lab

A module may import its own layer or lower ones. Imports inside functions count too: a lazy
import upward is still an upward dependency. A new module is placed in ``LAYERS`` by prefix
(the longest matching prefix wins); one that matches none fails here with the fix.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("hotspare.settings", "hotspare.local_secrets", "hotspare.fleet", "hotspare.adapters",
              "hotspare.planning.readings", "hotspare.health_probe_script")),
    ("planning", ("hotspare.planning",)),
    ("inventory", ("hotspare.inventory",)),
    ("access", ("hotspare.access", "hotspare.keys", "blocks")),
    ("tasks", ("tasks", "hotspare.probes", "hotspare.status", "hotspare.backup_status", "hotspare.continuity_plan")),
    ("flows", ("flows",)),
    ("top", ("deployments", "hotspare.commands", "hotspare.cli", "hotspare.lab", "hotspare.acknowledgements",
             "hotspare")),
]
PACKAGES = ("hotspare", "tasks", "flows", "blocks", "deployments")


def layer_of(module: str) -> int | None:
    """Index in LAYERS of the longest prefix matching ``module``; None for outside modules."""
    best: tuple[int, int] | None = None
    for index, (_name, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    return None if best is None else best[0]


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every absolute import in the file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def test_every_project_module_has_a_layer():
    unplaced = [name for name in project_modules() if layer_of(name) is None]
    assert not unplaced, f"place these modules in tests/test_layers.py LAYERS: {unplaced}"


def test_nothing_imports_upward():
    upward = []
    for name, path in project_modules().items():
        own = layer_of(name)
        for line, target in imported_modules(path):
            if target.split(".")[0] not in PACKAGES:
                continue
            # ``from hotspare import access`` names hotspare.access; ``from x.y import Name`` x.y.
            target_layer = layer_of(target)
            if target_layer is not None and target_layer > own:
                upward.append(f"{path.relative_to(ROOT)}:{line}: {LAYERS[own][0]} imports {LAYERS[target_layer][0]} ({target})")
    assert not upward, "imports against the dependency rule:\n" + "\n".join(upward)


def test_the_rule_catches_an_upward_import(tmp_path):
    """The checker itself: a planner importing a task is reported (guards an empty scan)."""
    assert layer_of("hotspare.planning.failover") < layer_of("tasks.failover")
    assert layer_of("hotspare.planning.readings") == 0
    assert len(project_modules()) > 50
    sample = tmp_path / "planner.py"
    sample.write_text("def plan():\n    from tasks.failover import activate\n")
    assert imported_modules(sample) == [(2, "tasks.failover.activate")]
