"""Read a fleet file and report every problem at once, each with file, line and field path.

YAML is parsed into nodes first so that every field path can be mapped back to the line it
came from; schema errors (pydantic) and plan rules (``rules.py``) are then collected together.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from hotspare.fleet.parts import fleet_parts
from hotspare.fleet.rules import rule_violations
from hotspare.fleet.schema import Fleet

FieldPath = tuple[str | int, ...]


@dataclass(frozen=True)
class FleetProblem:
    """One thing wrong with a fleet file, located as precisely as the YAML allows."""

    file: str
    line: int
    path: FieldPath
    message: str

    def __str__(self) -> str:
        dotted = ".".join(str(part) for part in self.path) or "(top)"
        return f"{self.file}:{self.line}: {dotted}: {self.message}"


class FleetError(Exception):
    """The fleet file is unusable; ``problems`` lists every reason."""

    def __init__(self, problems: list[FleetProblem]):
        self.problems = problems
        lines = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"{len(problems)} problem(s) in the fleet file:\n{lines}")


def load_fleet(file: str | Path) -> Fleet:
    """Parse and validate ``file``; raise FleetError listing every problem."""
    path = Path(file)
    try:
        text = path.read_text()
    except OSError as error:
        raise FleetError([FleetProblem(str(path), 0, (), f"cannot read: {error.strerror}")]) from None
    return parse_fleet(text, str(path))


def parse_fleet(text: str, filename: str = "<fleet>") -> Fleet:
    """Validate fleet YAML ``text``; ``filename`` only labels the problems."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark else 0
        reason = getattr(error, "problem", None) or str(error)
        raise FleetError([FleetProblem(filename, line, (), f"not valid YAML: {reason}")]) from None
    if not isinstance(data, dict):
        raise FleetError([FleetProblem(filename, 1, (), "the fleet file must be a mapping of sections")])
    lines = _line_index(root)
    try:
        fleet, schema_errors = Fleet.model_validate(data), []
    except ValidationError as error:
        fleet, schema_errors = None, error.errors()
    # The rules run even when the schema fails, on the items that pass on their own, so one
    # run lists every problem (see parts.py).
    problems = [_schema_problem(detail, filename, lines) for detail in schema_errors] + [
        FleetProblem(filename, _line_of(path, lines), path, message)
        for path, message in rule_violations(fleet_parts(data, schema_errors))
    ]
    if problems:
        # dict.fromkeys drops repeats and keeps the order; sorted() is stable within a line.
        raise FleetError(sorted(dict.fromkeys(problems), key=lambda problem: problem.line))
    return fleet


def _schema_problem(detail: dict, filename: str, lines: dict[FieldPath, int]) -> FleetProblem:
    path = tuple(detail["loc"])
    message = detail["msg"]
    if detail["type"] == "extra_forbidden":
        message = "unknown field (misspelled?)"
    elif detail["type"] == "missing":
        message = "required field is missing"
    elif detail["type"] == "string_pattern_mismatch" and path and path[-1] == "host_key":
        message = "host key must look like 'ssh-ed25519 AAAA…' (TYPE BASE64 from known_hosts)"
    elif detail["type"] == "string_pattern_mismatch":
        message = f"{message} (got {detail.get('input')!r})"
    return FleetProblem(filename, _line_of(path, lines), path, message)


def _line_index(node: yaml.Node | None, prefix: FieldPath = ()) -> dict[FieldPath, int]:
    """Map every field path in the YAML node tree to its 1-based line."""
    index: dict[FieldPath, int] = {}
    if node is None:
        return index
    index[prefix] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key_path = (*prefix, key_node.value)
            index.update(_line_index(value_node, key_path))
            index[key_path] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for position, item in enumerate(node.value):
            index.update(_line_index(item, (*prefix, position)))
    return index


def _line_of(path: FieldPath, lines: dict[FieldPath, int]) -> int:
    """Line of the deepest part of ``path`` present in the file (a missing field: its parent)."""
    for length in range(len(path), -1, -1):
        if path[:length] in lines:
            return lines[path[:length]]
    return 0
