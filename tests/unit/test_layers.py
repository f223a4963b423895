"""The dependency rule of docs/architecture.md, checked on the code: nothing imports upward.

    base (settings, errors, fleet schema, adapters, readings) ← planning ← inventory
        ← access (connections, credential blocks) ← tasks ← flows ← deployments, CLI, lab

A module may import its own layer or lower ones. Imports inside functions count too: a lazy
import upward is still an upward dependency.

Every module is placed in exactly one layer by ``LAYERS``: ``name`` places that module alone,
``name.*`` a package and everything in it; the most specific entry wins (so
``hotspare.planning.readings`` sits in base although ``hotspare.planning.*`` is planning), and
no entry appears twice. There is no catch-all: a new module that no entry covers fails here, and
so does an entry that covers nothing. Each failure message says what to change.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "base",
        (
            "hotspare",
            "hotspare.settings",
            "hotspare.errors",
            "hotspare.local_secrets",
            "hotspare.fleet.*",
            "hotspare.adapters.*",
            "hotspare.planning.readings",
            "hotspare.health_probe_script",
        ),
    ),
    ("planning", ("hotspare.planning.*",)),
    ("inventory", ("hotspare.inventory.*",)),
    ("access", ("hotspare.access", "hotspare.keys", "blocks.*")),
    (
        "tasks",
        (
            "tasks.*",
            "hotspare.probes",
            "hotspare.status",
            "hotspare.backup_status",
            "hotspare.continuity_plan",
            "hotspare.phone_approvals",
        ),
    ),
    ("flows", ("flows.*",)),
    (
        "top",
        (
            "deployments.*",
            "hotspare.commands.*",
            "hotspare.cli",
            "hotspare.lab.*",
            "hotspare.acknowledgements",
            "hotspare.issuer.*",
            "hotspare.subscription_webhook",
            "hotspare.warm_worker.*",
        ),
    ),
]
PACKAGES = ("hotspare", "tasks", "flows", "blocks", "deployments")


def entry_matches(entry: str, module: str) -> bool:
    """``name`` matches that module only; ``name.*`` the package and everything below it."""
    if entry.endswith(".*"):
        package = entry[:-2]
        return module == package or module.startswith(package + ".")
    return module == entry


def placement(module: str, layers: list[tuple[str, tuple[str, ...]]] = LAYERS) -> tuple[int, str] | None:
    """(layer index, entry) of the most specific entry matching ``module``; None when none does."""
    best: tuple[int, str] | None = None
    for index, (_name, entries) in enumerate(layers):
        for entry in entries:
            if entry_matches(entry, module) and (best is None or len(entry.rstrip(".*")) > len(best[1].rstrip(".*"))):
                best = (index, entry)
    return best


def layer_of(module: str) -> int | None:
    """Index in LAYERS of ``module``'s layer; None for modules outside the project."""
    placed = placement(module)
    return None if placed is None else placed[0]


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
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


def module_of(target: str, modules: dict[str, Path]) -> str:
    """The project module an import names: ``target`` itself, or the module it takes a name from."""
    name = target
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name if name in modules else target


def placement_problems(modules: dict[str, Path], layers: list[tuple[str, tuple[str, ...]]] = LAYERS) -> list[str]:
    """Every way the placement is not one layer per module, each with what to change."""
    problems = []
    seen: dict[str, str] = {}
    for name, entries in layers:
        for entry in entries:
            if entry in seen:
                problems.append(f"{entry!r} is listed in both {seen[entry]} and {name}: keep it in one layer")
            seen[entry] = name
            if not any(entry_matches(entry, module) for module in modules):
                problems.append(f"{entry!r} ({name}) matches no module: remove it from LAYERS")
    for module, path in modules.items():
        if placement(module, layers) is None:
            problems.append(
                f"{path}: module {module} has no layer: add it to LAYERS in tests/unit/test_layers.py, in the lowest "
                f"layer whose modules it imports (layers, lowest first: {', '.join(name for name, _ in layers)})"
            )
    return problems


def upward_imports(modules: dict[str, Path], layers: list[tuple[str, tuple[str, ...]]] = LAYERS) -> list[str]:
    """Every import of a higher layer, each with the fix."""
    upward = []
    for name, path in modules.items():
        own = placement(name, layers)
        if own is None:
            continue
        for line, target in imported_modules(path):
            if target.split(".")[0] not in PACKAGES:
                continue
            # ``from hotspare import access`` names hotspare.access; ``from x.y import Name`` x.y.
            placed = placement(module_of(target, modules), layers)
            if placed is not None and placed[0] > own[0]:
                mine, theirs = layers[own[0]][0], layers[placed[0]][0]
                allowed = ", ".join(layer for layer, _ in layers[: own[0] + 1])
                upward.append(
                    f"{path}:{line}: {mine} imports {theirs} ({target}); a {mine} module may import only "
                    f"{allowed}: pass what it needs in as an argument, or move the code that needs "
                    f"{module_of(target, modules)} up into {theirs}"
                )
    return upward


def test_every_project_module_is_in_exactly_one_layer():
    problems = placement_problems(project_modules())
    assert not problems, "\n".join(problems)


def test_nothing_imports_upward():
    upward = upward_imports(project_modules())
    assert not upward, "imports against the dependency rule:\n" + "\n".join(upward)


def test_the_rule_catches_an_upward_import(tmp_path):
    """The checker itself: a planner importing a task is reported (guards an empty scan)."""
    assert layer_of("hotspare.planning.failover") < layer_of("tasks.failover")
    assert layer_of("hotspare.planning.readings") == 0
    assert layer_of("hotspare.errors") == 0 and layer_of("hotspare") == 0
    assert len(project_modules()) > 50
    sample = tmp_path / "planner.py"
    sample.write_text("def plan():\n    from tasks.failover import activate\n")
    assert imported_modules(sample) == [(2, "tasks.failover.activate")]


def test_a_misplaced_module_fails_the_rule_with_the_fix(tmp_path):
    """A project tree of four modules: a planner importing a runbook and a new module nobody
    placed; both are reported with what to change, and the well-placed ones are not."""
    files = {
        "hotspare/__init__.py": "",
        "hotspare/planning/__init__.py": "",
        "hotspare/planning/failover.py": "from flows.failover import failover\n",
        "hotspare/newthing.py": "from hotspare.planning.failover import plan\n",
        "flows/__init__.py": "",
        "flows/failover.py": "from hotspare.planning import failover\n\ndef failover():\n    return None\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    modules = project_modules(tmp_path)
    layers = [("base", ("hotspare",)), ("planning", ("hotspare.planning.*",)), ("flows", ("flows.*",))]

    unplaced = placement_problems(modules, layers)
    assert unplaced == [
        f"{tmp_path / 'hotspare/newthing.py'}: module hotspare.newthing has no layer: add it to LAYERS in "
        "tests/unit/test_layers.py, in the lowest layer whose modules it imports (layers, lowest first: "
        "base, planning, flows)"
    ]
    upward = upward_imports(modules, layers)
    assert upward == [
        f"{tmp_path / 'hotspare/planning/failover.py'}:1: planning imports flows (flows.failover.failover); a "
        "planning module may import only base, planning: pass what it needs in as an argument, or move the "
        "code that needs flows.failover up into flows"
    ]
    # the same entry in two layers, and an entry that covers nothing, are reported too
    doubled = layers + [("top", ("flows.*", "hotspare.gone"))]
    assert placement_problems(modules, doubled)[:2] == [
        "'flows.*' is listed in both flows and top: keep it in one layer",
        "'hotspare.gone' (top) matches no module: remove it from LAYERS",
    ]
