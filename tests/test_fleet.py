"""Fleet file validation: every rule, with file, line and field path; all problems at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotspare.cli import main
from hotspare.fleet import FleetError, parse_fleet

EXAMPLE = (Path(__file__).parent.parent / "docs" / "fleet-example.yaml").read_text()


def problems_of(text: str) -> list[str]:
    with pytest.raises(FleetError) as caught:
        parse_fleet(text, "fleet.yaml")
    return [str(problem) for problem in caught.value.problems]


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the ``occurrence``-th line containing ``needle``."""
    hits = [number for number, line in enumerate(text.splitlines(), 1) if needle in line]
    return hits[occurrence - 1]


def test_example_fleet_is_valid():
    fleet = parse_fleet(EXAMPLE)
    assert [service.name for service in fleet.services] == ["app1"]
    assert fleet.ssh_block_of(fleet.server("storage-vault")) == "storage-ssh"
    assert fleet.ssh_block_of(fleet.server("prod-east")) == "fleet-ssh"


def test_mirror_in_same_facility_as_production_is_refused():
    text = EXAMPLE.replace("    facility: west\n    address: 10.211.77.12", "    facility: east\n    address: 10.211.77.12")
    [problem] = problems_of(text)
    assert problem.startswith(f"fleet.yaml:{line_of(text, 'mirror: mirror-west')}: services.0.mirror:")
    assert "same facility (east)" in problem


def test_storage_must_be_neither_production_nor_mirror():
    text = EXAMPLE.replace("storage: storage-vault", "storage: mirror-west")
    problems = problems_of(text)
    assert any("services.0.storage: the storage host must be neither" in p for p in problems)


def test_unknown_references_are_each_reported_with_their_line():
    text = (
        EXAMPLE.replace("production: prod-east", "production: prod-eest")
        .replace("zone: lab.test\n    production", "zone: nowhere.test\n    production")
        .replace("facility: vault\n    address", "facility: vaultt\n    address")
        .replace("escalation: [Dana Ops]", "escalation: [Nobody]")
    )
    problems = problems_of(text)
    assert len(problems) == 4, problems
    expected = f"fleet.yaml:{line_of(text, 'production: prod-eest')}: services.0.production: unknown server 'prod-eest'"
    assert any(p.startswith(expected) for p in problems)
    assert any("servers.2.facility: unknown facility 'vaultt'" in p for p in problems)
    assert any("services.0.zone: unknown zone 'nowhere.test'" in p for p in problems)
    assert any("escalation.0: unknown contact 'Nobody'" in p for p in problems)


def test_duplicate_names_and_addresses():
    text = EXAMPLE.replace("name: mirror-west", "name: prod-east").replace("10.211.77.12", "10.211.77.11")
    problems = problems_of(text)
    assert any("servers.1.name: name 'prod-east' is used more than once" in p for p in problems)
    assert any("servers.1.address: address 10.211.77.11:22 is used by more than one server" in p for p in problems)


def test_schema_errors_are_all_listed_with_lines():
    text = EXAMPLE.replace("ssh_port: 22\n    host_key", "ssh_prot: 22\n    host_key", 1).replace(
        "rpo_hours: 12\n    copies_to_keep: 4\n    max_shrink", "rpo_hours: soon\n    copies_to_keep: 4\n    max_shrink"
    )
    problems = problems_of(text)
    assert f"fleet.yaml:{line_of(text, 'ssh_prot')}: servers.0.ssh_prot: unknown field (misspelled?)" in problems
    assert any(p.startswith(f"fleet.yaml:{line_of(text, 'rpo_hours: soon')}: services.0.rpo_hours:") for p in problems)


def test_bad_host_key_and_missing_field():
    text = EXAMPLE.replace('host_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExample"', 'host_key: "not a key"')
    text = text.replace("    dns_name: app1.lab.test\n", "")
    problems = problems_of(text)
    assert any("servers.0.host_key: host key must look like" in p for p in problems)
    assert any("services.0.dns_name: required field is missing" in p for p in problems)


def test_yaml_syntax_error_names_the_line():
    text = EXAMPLE.replace("  - name: west\n", "  - name: west\n   bad: [\n", 1)
    [problem] = problems_of(text)
    assert "not valid YAML" in problem
    assert problem.startswith("fleet.yaml:")


def test_cli_check_exits_non_zero_and_lists_everything(tmp_path, capsys):
    broken = tmp_path / "fleet.yaml"
    broken.write_text(EXAMPLE.replace("production: prod-east", "production: ghost").replace("storage: storage-vault", "storage: mirror-west"))
    assert main(["fleet", "check", str(broken)]) == 2
    error = capsys.readouterr().err
    assert "unknown server 'ghost'" in error and "storage host must be neither" in error
    assert str(broken) in error

    good = tmp_path / "good.yaml"
    good.write_text(EXAMPLE)
    assert main(["fleet", "check", str(good)]) == 0


def test_schema_and_rule_errors_are_reported_together_in_line_order():
    text = EXAMPLE.replace("    ssh_user_block: storage-ssh", "    ssh_user_blok: storage-ssh").replace(
        "    facility: west\n    address: 10.211.77.12", "    facility: east\n    address: 10.211.77.12"
    )
    typo, mirror = problems_of(text)
    assert typo == f"fleet.yaml:{line_of(text, 'ssh_user_blok')}: servers.2.ssh_user_blok: unknown field (misspelled?)"
    assert mirror.startswith(f"fleet.yaml:{line_of(text, 'mirror: mirror-west')}: services.0.mirror:")
    assert "same facility (east)" in mirror


def test_service_naming_a_server_with_a_schema_error_gets_no_unknown_server():
    text = EXAMPLE.replace("ssh_port: 22\n    host_key", "ssh_prot: 22\n    host_key", 1)
    assert problems_of(text) == [f"fleet.yaml:{line_of(text, 'ssh_prot')}: servers.0.ssh_prot: unknown field (misspelled?)"]


def test_duplicate_name_counts_an_entry_with_a_schema_error():
    text = EXAMPLE.replace("name: mirror-west", "name: prod-east").replace(
        "ssh_port: 22\n    host_key", "ssh_prot: 22\n    host_key", 1
    )
    problems = problems_of(text)
    assert f"fleet.yaml:{line_of(text, 'ssh_prot')}: servers.0.ssh_prot: unknown field (misspelled?)" in problems
    assert any(p.startswith(f"fleet.yaml:{line_of(text, 'name: prod-east')}: servers.0.name: name 'prod-east'") for p in problems)
    assert any(p.startswith(f"fleet.yaml:{line_of(text, 'name: prod-east', 2)}: servers.1.name: name 'prod-east'") for p in problems)


def test_unusable_section_is_reported_once_without_cascades():
    servers = EXAMPLE[EXAMPLE.index("servers:\n") : EXAMPLE.index("zones:\n")]
    text = EXAMPLE.replace(servers, "servers: prod-east\n\n")
    [problem] = problems_of(text)
    assert problem.startswith(f"fleet.yaml:{line_of(text, 'servers: prod-east')}: servers:")
