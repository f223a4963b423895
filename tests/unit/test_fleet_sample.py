"""The sample fleet file is generated from the schema, complete, valid, and what the docs show."""

from __future__ import annotations

import re
from pathlib import Path

from hotspare.fleet.load import parse_fleet
from hotspare.fleet.sample import field_paths, sample_fleet_file
from hotspare.fleet.schema import Fleet

DOCS_SAMPLE = Path(__file__).resolve().parents[2] / "docs" / "fleet-example.yaml"


def test_docs_sample_is_the_generated_one():
    assert DOCS_SAMPLE.read_text() == sample_fleet_file(), (
        "docs/fleet-example.yaml is out of date: run `hotspare fleet sample --out docs/fleet-example.yaml`"
    )


def test_sample_is_a_valid_fleet_file():
    fleet = parse_fleet(sample_fleet_file(), "sample.yaml")
    assert [service.name for service in fleet.services] == ["app1"]
    assert {server.role.value for server in fleet.servers} == {"production", "mirror", "storage"}


def test_every_schema_field_appears_in_the_docs_sample():
    text = DOCS_SAMPLE.read_text()
    keys = set(re.findall(r"^\s*(?:#\s*)?(?:-\s*)?([a-z_][a-z0-9_]*):", text, flags=re.MULTILINE))
    missing = [path for path in field_paths(Fleet) if path.rsplit(".", 1)[-1] not in keys]
    assert not missing, f"fields missing from docs/fleet-example.yaml: {missing}"
    # And the walk itself sees nested sections (guards against an empty walk passing).
    assert "services.backup.password_block" in field_paths(Fleet)


def test_every_field_has_its_description_above_it():
    lines = sample_fleet_file().splitlines()
    described = 0
    for number, line in enumerate(lines):
        if re.match(r"^\s*(?:#\s*)?(?:-\s*)?(version|name|data_paths|password_block):", line):
            assert lines[number - 1].lstrip().startswith("#"), f"no description above line {number + 1}: {line}"
            described += 1
    assert described >= 4
