"""Read a fleet file and report every problem at once, each with file, line and field path.

YAML is parsed into nodes first so that every field path can be mapped back to the line it
came from; schema errors (pydantic) and plan rules (``rules.py``) are then collected together.

The file is untrusted input of bounded size: at most ``MAX_FLEET_BYTES``, at most
``MAX_ALIASES`` aliases (``*name``) and ``MAX_NODES`` values once aliases are expanded (an alias
bomb is refused before anything walks it), at most ``MAX_DEPTH`` levels of nesting and
``MAX_DIGITS`` digits in an integer (either would otherwise end in a Python error, not a
sentence), and no key twice in one mapping (YAML would let the last one win silently). Each of
these is a problem with its file and line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from hotspare.errors import BadConfiguration
from hotspare.fleet.parts import fleet_parts
from hotspare.fleet.rules import rule_violations
from hotspare.fleet.schema import Fleet

FieldPath = tuple[str | int, ...]
MAX_FLEET_BYTES = 4 * 1024 * 1024  # a fleet of thousands of services fits in a tenth of this
MAX_ALIASES = 100  # anchors help with repeated blocks; an alias bomb needs far more
MAX_NODES = 200_000  # values after expanding aliases (the sample fleet has a few hundred)
MAX_DEPTH = 64  # nested mappings and lists (the schema needs five levels)
MAX_DIGITS = 30  # an integer literal (a port, a count, a size in bytes needs under 20)


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


class FleetError(BadConfiguration):
    """The fleet file is unusable; ``problems`` lists every reason."""

    def __init__(self, problems: list[FleetProblem]):
        self.problems = problems
        lines = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"{len(problems)} problem(s) in the fleet file:\n{lines}")


def load_fleet(file: str | Path) -> Fleet:
    """Parse and validate ``file``; raise FleetError listing every problem."""
    path = Path(file)
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_FLEET_BYTES + 1)
    except OSError as error:
        raise FleetError([FleetProblem(str(path), 0, (), f"cannot read: {error.strerror}")]) from None
    _within_size(len(data), str(path))
    try:
        text = data.decode()
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise FleetError([FleetProblem(str(path), line, (), "not UTF-8 text: save the file as UTF-8")]) from None
    return parse_fleet(text, str(path))


def _within_size(size: int, filename: str) -> None:
    if size > MAX_FLEET_BYTES:
        raise FleetError(
            [
                FleetProblem(
                    filename, 0, (), f"larger than {MAX_FLEET_BYTES // (1024 * 1024)} MiB: refused (is this the fleet file?)"
                )
            ]
        )


def parse_fleet(text: str, filename: str = "<fleet>") -> Fleet:
    """Validate fleet YAML ``text``; ``filename`` only labels the problems."""
    _within_size(len(text.encode(errors="replace")), filename)
    try:
        root, data = _bounded_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark else 0
        reason = getattr(error, "problem", None) or str(error)
        raise FleetError([FleetProblem(filename, line, (), f"not valid YAML: {reason}")]) from None
    if not isinstance(data, dict):
        raise FleetError([FleetProblem(filename, 1, (), "the fleet file must be a mapping of sections")])
    duplicates = [FleetProblem(filename, line, path, message) for line, path, message in _duplicate_keys(root)]
    if duplicates:
        raise FleetError(duplicates)
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


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader, counting aliases and nesting as it composes (past ``MAX_ALIASES`` or
    ``MAX_DEPTH`` it stops) and refusing integers longer than ``MAX_DIGITS``."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self.aliases = 0
        self.depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"more than {MAX_ALIASES} aliases (*name): refused (an alias bomb?); write the repeated blocks out",
                    self.peek_event().start_mark,
                )
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"nested more than {MAX_DEPTH} levels deep: refused (the fleet file needs five)",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_yaml_int(self, node):
        if sum(character.isdigit() for character in str(node.value)) > MAX_DIGITS:
            raise yaml.constructor.ConstructorError(
                None, None, f"a number of more than {MAX_DIGITS} digits: refused (a typo?)", node.start_mark
            )
        return super().construct_yaml_int(node)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


def _bounded_load(text: str) -> tuple[yaml.Node | None, object]:
    """(node tree, Python data) of ``text``, composed once; a tree that expands past
    ``MAX_NODES`` values is refused before it is constructed or walked."""
    loader = _BoundedLoader(text)
    try:
        root = loader.get_single_node()
        if root is not None and _expanded_size(root, {}) > MAX_NODES:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"expands to more than {MAX_NODES} values through its aliases: refused (an alias bomb?)",
                root.start_mark,
            )
        return root, (loader.construct_document(root) if root is not None else None)
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many values ``node`` stands for with every alias expanded (each shared node counted once
    per use, computed once); stops counting past ``MAX_NODES``."""
    if id(node) in sizes:
        return sizes[id(node)]
    sizes[id(node)] = MAX_NODES + 1  # a node inside itself (a recursive alias) counts as too big
    total = 1
    if isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = node.value
    else:
        children = []
    for child in children:
        total += _expanded_size(child, sizes)
        if total > MAX_NODES:
            break
    sizes[id(node)] = total
    return total


def _duplicate_keys(
    node: yaml.Node | None, prefix: FieldPath = (), seen: set[int] | None = None
) -> list[tuple[int, FieldPath, str]]:
    """(line, path, sentence) of every key written twice in one mapping, at any depth."""
    seen = set() if seen is None else seen
    if node is None or id(node) in seen:
        return []
    seen.add(id(node))
    found: list[tuple[int, FieldPath, str]] = []
    if isinstance(node, yaml.MappingNode):
        first_lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if isinstance(key_node, yaml.ScalarNode) and key in first_lines and key != "<<":
                sentence = (
                    f"key {key!r} is written twice in this mapping (first on line {first_lines[key]}); "
                    "YAML would keep only the last: keep one"
                )
                found.append((line, (*prefix, key), sentence))
            first_lines.setdefault(key, line)
            found += _duplicate_keys(value_node, (*prefix, key), seen)
    elif isinstance(node, yaml.SequenceNode):
        for position, item in enumerate(node.value):
            found += _duplicate_keys(item, (*prefix, position), seen)
    return found


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
    elif detail["type"] == "value_error":  # our own sentence (fleet/values.py), without pydantic's prefix
        message = message.removeprefix("Value error, ")
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
