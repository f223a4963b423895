"""Fleet file validation: every rule, with file, line and field path; all problems at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_local_secrets import home

from hotspare.adapters.errors import PermanentError
from hotspare.cli import main
from hotspare.fleet import FleetError, parse_fleet, paths
from hotspare.fleet.paths import path_problem
from hotspare.planning.failover import activation_argv

EXAMPLE = (Path(__file__).parents[1] / "data" / "fleet-basic.yaml").read_text()


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
    text = EXAMPLE.replace(
        'host_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExample"', 'host_key: "not a key"'
    )
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
    broken.write_text(
        EXAMPLE.replace("production: prod-east", "production: ghost").replace("storage: storage-vault", "storage: mirror-west")
    )
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
    assert any(
        p.startswith(f"fleet.yaml:{line_of(text, 'name: prod-east', 2)}: servers.1.name: name 'prod-east'") for p in problems
    )


def test_unusable_section_is_reported_once_without_cascades():
    servers = EXAMPLE[EXAMPLE.index("servers:\n") : EXAMPLE.index("zones:\n")]
    text = EXAMPLE.replace(servers, "servers: prod-east\n\n")
    [problem] = problems_of(text)
    assert problem.startswith(f"fleet.yaml:{line_of(text, 'servers: prod-east')}: servers:")


# ---------------------------------------------------------------------------------------
# Safe paths: what a service may declare (hotspare/fleet/paths.py, rules.py)

SECOND_SERVICE = """  - name: app2
    dns_name: app2.lab.test
    zone: lab.test
    accounts: {uid_min: 3000, uid_max: 3999}
    production: PRODUCTION
    mirror: mirror-west
    storage: storage-vault
    data_paths: [DATA]
    backup: {password_block: fleet-restic, repository: REPOSITORY}

contacts:
"""


def with_second_service(data: str, production: str = "prod-east", repository: str = "/srv/backup/app2") -> str:
    """The example fleet plus service app2 declaring ``data`` (a server for it added too)."""
    service = SECOND_SERVICE.replace("PRODUCTION", production).replace("DATA", data).replace("REPOSITORY", repository)
    server = """  - name: prod-other
    facility: east
    address: 10.211.77.13
    host_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExampl4"
    role: production

zones:
"""
    return EXAMPLE.replace("\ncontacts:\n", "\n" + service, 1).replace("\nzones:\n", "\n" + server, 1)


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/etc",
        "/usr",
        "/usr/lib",
        "/bin",
        "/sbin",
        "/lib",
        "/lib64",
        "/boot",
        "/dev",
        "/proc",
        "/sys",
        "/run",
        "/var",
        "/var/lib",
        "/var/log",
        "/root",
        "/home",
        "/srv",
        "/opt",
        "/tmp",
        "/var/tmp",
    ],
)
def test_system_trees_as_a_whole_are_refused(path):
    assert "system tree as a whole" in path_problem(path)


@pytest.mark.parametrize(
    "path",
    [
        "/proc/1/root",
        "/sys/class",
        "/dev/sda",
        "/run/app1",
        "/boot/grub",
        "/etc/ssh/sshd_config",
        "/root/.ssh/authorized_keys",
    ],
)
def test_nothing_inside_server_owned_trees(path):
    assert "belongs to the server itself" in path_problem(path)


@pytest.mark.parametrize("path", ["/etc/passwd", "/etc/shadow", "/etc/hostname", "/etc/hosts"])
def test_server_identity_files_are_refused(path):
    assert "belongs to the server itself" in path_problem(path)


@pytest.mark.parametrize(
    "path",
    [
        "/srv/hotspare",
        "/srv/hotspare/app1/current",
        "/run/hotspare",
        "/run/hotspare/key",
        "/srv/backup",
        "/srv/backup/app1",
        "/var/tmp/hotspare-restore",
        "/usr/local/lib/hotspare",
        "/var/lib/hotspare/drills",
        "/etc/hotspare",
        "/opt/hotspare/drills",
    ],
)
def test_hotspare_own_folders_are_refused(path):
    assert "hotspare's own working folder" in path_problem(path)


@pytest.mark.parametrize(
    "path",
    [
        "/etc/nginx/sites-available/app1",
        "/var/lib/postgresql/app1",
        "/srv/app1/data",
        "/home/app1",
        "/opt/app1",
        "/etc/app1",
        "/usr/local/share/app1",
        "/var/www/app1",
        "/srv/hotspare-app",
    ],
)
def test_paths_inside_system_trees_are_fine(path):
    assert path_problem(path) is None


@pytest.mark.parametrize(
    ("path", "hint"),
    [
        ("srv/app1", "is relative"),
        ("/srv/app1/", "write '/srv/app1'"),
        ("//srv/app1", "write '/srv/app1'"),
        ("/srv//app1", "write '/srv/app1'"),
        ("/srv/./app1", "write '/srv/app1'"),
        ("/srv/app1/../app2", "write '/srv/app2'"),
        ("/srv/app1/.", "write '/srv/app1'"),
        ("/srv/app1\n", "control character"),
        ("/srv/app1/$(id>/tmp/x)", "contains '$' '(' ')' '>'"),
        ("/srv/app1/x /etc", "contains ' '"),
        ("/srv/app1/`id`", "contains '`'"),
        ("/srv/app1/a;b", "contains ';'"),
    ],
)
def test_non_normal_paths_name_their_normal_form(path, hint):
    assert hint in path_problem(path)


def test_own_folders_are_those_the_planners_use():
    from hotspare.planning import rebuild, replication, restic, shell_programs

    assert paths.COPIES_ROOT == replication.COPIES_ROOT
    assert paths.RUN_DIR == shell_programs.RUN_DIR
    assert paths.BACKUP_ROOT == restic.DEFAULT_REPOSITORY_BASE
    assert paths.RESTORE_BASE == rebuild.RESTORE_BASE


def test_unsafe_paths_are_all_listed_with_file_line_and_field():
    text = (
        EXAMPLE.replace("data_paths: [/srv/app1/data]", "data_paths: [/srv/app1/data, /var/lib, srv/relative, /srv/app1/data/]")
        .replace("app_paths: [/srv/app1/app]", "app_paths: [/srv/hotspare/app1]")
        .replace("config_paths: [/etc/app1]", "config_paths: [/etc, /etc/nginx/sites-available/app1, /srv/app1/data]")
        .replace("files: [/srv/app1/accounts]", "files: [/run/hotspare/accounts, /srv/app1/../app1/accounts]")
    )
    problems = problems_of(text)
    data, app, config, files = (line_of(text, field) for field in ("data_paths:", "app_paths:", "config_paths:", "files:"))
    assert problems == [
        f"fleet.yaml:{data}: services.0.data_paths.1: /var/lib is a system tree as a whole; declare the service's own folder or file inside it",
        f"fleet.yaml:{data}: services.0.data_paths.2: 'srv/relative' is relative; write it absolute, starting with /",
        f"fleet.yaml:{data}: services.0.data_paths.3: '/srv/app1/data/' is not in normal form (no '.', '..', '//' or trailing slash); write '/srv/app1/data'",
        f"fleet.yaml:{app}: services.0.app_paths.0: /srv/hotspare/app1 overlaps hotspare's own working folder /srv/hotspare",
        f"fleet.yaml:{config}: services.0.config_paths.0: /etc is a system tree as a whole; declare the service's own folder or file inside it",
        f"fleet.yaml:{config}: services.0.config_paths.2: /srv/app1/data is declared twice in this service (also at data_paths.0)",
        f"fleet.yaml:{files}: services.0.accounts.files.0: /run/hotspare/accounts overlaps hotspare's own working folder /run/hotspare",
        f"fleet.yaml:{files}: services.0.accounts.files.1: '/srv/app1/../app1/accounts' is not in normal form (no '.', '..', '//' or trailing slash); write '/srv/app1/accounts'",
    ]


def test_unsafe_path_is_reported_with_the_other_problems_of_its_service():
    text = EXAMPLE.replace("data_paths: [/srv/app1/data]", "data_paths: [/]").replace(
        "production: prod-east", "production: ghost"
    )
    problems = problems_of(text)
    assert len(problems) == 2, problems
    assert any("services.0.production: unknown server 'ghost'" in p for p in problems)
    assert any("services.0.data_paths.0: / is a system tree as a whole" in p for p in problems)


def test_paths_of_two_services_on_one_server_must_not_overlap():
    text = with_second_service("/srv/app1")
    problems = problems_of(text)
    assert problems == [
        f"fleet.yaml:{line_of(text, 'data_paths: [/srv/app1/data]')}: services.0.data_paths.0: /srv/app1/data is inside "
        "/srv/app1 of service 'app2' on mirror-west, prod-east; each path on a server must belong to one service",
        f"fleet.yaml:{line_of(text, 'app_paths: [/srv/app1/app]')}: services.0.app_paths.0: /srv/app1/app is inside "
        "/srv/app1 of service 'app2' on mirror-west, prod-east; each path on a server must belong to one service",
        f"fleet.yaml:{line_of(text, 'files: [/srv/app1/accounts]')}: "
        "services.0.accounts.files.0: /srv/app1/accounts is inside /srv/app1 of service 'app2' on mirror-west, prod-east; "
        "each path on a server must belong to one service",
        f"fleet.yaml:{line_of(text, 'data_paths: [/srv/app1]')}: services.1.data_paths.0: /srv/app1 is a parent of "
        "/srv/app1/data of service 'app1' on mirror-west, prod-east; each path on a server must belong to one service",
    ]


def test_the_same_path_on_a_shared_mirror_is_refused_and_on_other_servers_is_fine():
    # app2 runs on prod-other but keeps its copies on mirror-west, like app1.
    shared_mirror = problems_of(with_second_service("/srv/app1/data", production="prod-other"))
    assert len(shared_mirror) == 2
    assert all("the same path as /srv/app1/data" in p and "on mirror-west;" in p for p in shared_mirror)
    # On servers of its own, app2 may use the same path names as app1.
    text = with_second_service("/srv/app1/data", production="prod-other").replace(
        "    mirror: mirror-west\n    storage: storage-vault\n    data_paths: [/srv/app1/data]\n    backup",
        "    mirror: storage-vault\n    storage: storage-vault\n    data_paths: [/srv/app1/data]\n    backup",
    )
    assert not any("each path on a server" in p for p in problems_of(text))


def test_backup_repositories_must_not_nest_or_touch_system_trees():
    nested = with_second_service("/srv/app2/data", repository="/srv/backup/app1/inner")
    # app1's repository is the default one (no line of its own): located at its backup section.
    assert problems_of(nested) == [
        f"fleet.yaml:{line_of(nested, 'backup:')}: services.0.backup.repository: /srv/backup/app1 is a parent of "
        "/srv/backup/app1/inner of service 'app2' on storage-vault; each backup repository on a server must belong to one service",
        f"fleet.yaml:{line_of(nested, 'repository: /srv/backup/app1/inner')}: services.1.backup.repository: "
        "/srv/backup/app1/inner is inside /srv/backup/app1 of service 'app1' on storage-vault; "
        "each backup repository on a server must belong to one service",
    ]
    for repository, message in (
        ("/srv/backup", "backup root itself"),
        ("/var/lib", "system tree"),
        ("/srv/hotspare/b", "hotspare's own working folder /srv/hotspare"),
    ):
        problems = problems_of(with_second_service("/srv/app2/data", repository=repository))
        assert any("services.1.backup.repository:" in p and message in p for p in problems), problems
    # A service's data must stay out of any repository, wherever it is declared.
    elsewhere = with_second_service("/srv/app2/data", repository="/srv/app2/data/restic")
    assert any(
        "services.1.data_paths.0: /srv/app2/data overlaps the backup repository /srv/app2/data/restic" in p
        for p in problems_of(elsewhere)
    )


def test_the_lab_fleet_passes_the_check():
    import yaml

    from hotspare.lab import fleet_file
    from hotspare.lab.topology import HOSTS, SlotLayout

    keys = {host.name: f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{index}" for index, host in enumerate(HOSTS)}
    lab_fleet = fleet_file.fleet(SlotLayout(3), keys, {"cpus": 2, "memory_mb": 2048, "disk_gb": 40})
    fleet = parse_fleet(yaml.safe_dump(lab_fleet, sort_keys=False))
    assert {service.name for service in fleet.services} == {"app1", "app2", "app3"}
    # app3 shares app1's production and mirror: its paths and its port are its own
    assert {service.name: service.app_port for service in fleet.services} == {"app1": 8080, "app2": 8080, "app3": 8083}


def test_activation_names_only_safe_declared_paths():
    tree = "/srv/hotspare/shop/copies/20261125T100000Z/tree"
    argv = activation_argv(tree, ["/srv/shop/data", "/etc/shop"])
    assert argv[-3:] == [f"{tree}/./srv/shop/data", f"{tree}/./etc/shop", "/"]
    for live_paths, reason in (
        (["/srv/shop/data", "/etc"], "/etc is a system tree"),
        (["/"], "/ is a system tree"),
        (["/srv/shop/data/.."], "not in normal form"),
        (["srv/shop"], "is relative"),
        (["/srv/hotspare/shop"], "hotspare's own working folder"),
        ([], "declares no paths"),
    ):
        with pytest.raises(PermanentError, match="refusing to make a copy live") as refused:
            activation_argv(tree, live_paths)
        assert reason in str(refused.value)
    for outside in ("/srv/shop", "/srv/hotspare/../etc", "/srv/hotspare"):
        with pytest.raises(PermanentError, match="is not a normal path inside /srv/hotspare"):
            activation_argv(outside, ["/srv/shop/data"])


# Incident chains, customers, the status page and health checkers name things of the fleet.
SECTIONS = """
incidents:
  chains:
    - category: 1
      steps:
        - {action: call, contact: Dana Ops}
        - {action: sms, contact: Quiet Kim}
        - {action: email, contact: Quiet Kim}
        - {action: call, contact: Nobody}
customer_notices:
  customers:
    - name: acme
      contacts: [{name: Ana, email: ana@acme.example}]
      services: [app1, app9]
  status_page: {server: storage-vault, folder: /srv/status, url: "http://status.example/"}
health:
  checkers:
    - {name: control, facility: control}
    - {name: east, facility: east, via: mirror-west}
    - {name: moon, facility: moon, via: ghost}
  services: [{name: app7}]
"""


def with_sections(text: str = SECTIONS) -> str:
    return EXAMPLE.replace(
        "escalation: [Dana Ops]\n",
        "  - name: Quiet Kim\n    role: night shift\n    email: kim@example.test\nescalation: [Dana Ops]\n" + text,
    )


def test_chains_customers_status_page_and_checkers_name_what_exists():
    text = with_sections()
    problems = problems_of(text)

    def located(needle: str, field: str, occurrence: int = 1) -> str:
        return f"fleet.yaml:{line_of(text, needle, occurrence)}: {field}: "

    expected = [
        located("{action: sms, contact: Quiet Kim}", "incidents.chains.0.steps.1.contact")
        + "contact 'Quiet Kim' has no phone, which this sms step needs (add it under contacts)",
        located("{action: call, contact: Nobody}", "incidents.chains.0.steps.3.contact") + "unknown contact 'Nobody'",
        located("services: [app1, app9]", "customer_notices.customers.0.services.1") + "unknown service 'app9'",
        located("status_page: {server: storage-vault", "customer_notices.status_page.server")
        + "server 'storage-vault' has role storage, not web",
        located("via: mirror-west", "health.checkers.1.via") + "server 'mirror-west' stands in facility west, not in east",
        located("via: ghost", "health.checkers.2.facility") + "unknown facility 'moon'",
        located("via: ghost", "health.checkers.2.via") + "unknown server 'ghost'",
        located("services: [{name: app7}]", "health.services.0.name") + "unknown service 'app7'",
    ]
    assert len(problems) == len(expected), problems
    for prefix in expected:
        assert any(problem.startswith(prefix) for problem in problems), (prefix, problems)
    # The e-mail step to a contact with an address is fine; so are chains naming known contacts.
    assert not any("steps.2" in problem or "steps.0" in problem for problem in problems)


def test_good_chains_customers_status_page_and_checkers_pass():
    good = (
        SECTIONS.replace("{action: sms, contact: Quiet Kim}", "{action: call, contact: Dana Ops}")
        .replace("        - {action: call, contact: Nobody}\n", "")
        .replace("[app1, app9]", "[app1]")
        .replace("via: mirror-west", "via: prod-east")
        .replace("    - {name: moon, facility: moon, via: ghost}\n", "")
        .replace("  services: [{name: app7}]\n", "")
    )
    web = (
        "  - name: web-vault\n    facility: vault\n    address: 10.211.77.41\n"
        '    host_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExampl4"\n'
        "    role: web\n\nzones:\n"
    )
    text = with_sections(good.replace("server: storage-vault", "server: web-vault")).replace("\nzones:\n", web, 1)
    fleet = parse_fleet(text)
    assert fleet.customer_notices.status_page.server == "web-vault"
    assert [checker.via for checker in fleet.health.checkers] == ["local", "prod-east"]


def test_two_services_on_one_server_never_claim_the_same_accounts():
    """The account merge of one service must never remove or change another's on a shared
    mirror: overlapping UID ranges (one of them without declared users) or a user declared by
    both are refused; disjoint ranges, or disjoint declared users, pass."""
    fine = with_second_service("/srv/app2/data", production="prod-other")
    parse_fleet(fine, "fleet.yaml")  # no problem
    overlapping = fine.replace("accounts: {uid_min: 3000, uid_max: 3999}", "accounts: {uid_min: 2500, uid_max: 3999}")
    [problem] = problems_of(overlapping)
    assert "services.1.accounts.uid_min: UID range 2500-3999 overlaps 2000-2999 of service 'app1' on mirror-west" in problem, (
        problem
    )
    both_declare = fine.replace(
        "accounts: {uid_min: 3000, uid_max: 3999}", "accounts: {uid_min: 2000, uid_max: 2999, users: [app2-web, app1-batch]}"
    ).replace("# users: [app1-web, app1-batch]  #", "users: [app1-web, app1-batch]  #")
    [problem] = problems_of(both_declare)
    assert "services.1.accounts.users: user(s) app1-batch also declared by service 'app1' on mirror-west" in problem
    parse_fleet(
        both_declare.replace("[app2-web, app1-batch]", "[app2-web, app2-batch]"), "fleet.yaml"
    )  # disjoint users: no problem


def test_allow_special_names_a_path_of_the_service_and_known_kinds():
    text = EXAMPLE.replace(
        "      files: [/srv/app1/accounts]    # application account files\n",
        "      files: [/srv/app1/accounts]    # application account files\n"
        "    allow_special:\n"
        "      - {path: /srv/app1/app/bin/ping, allow: [setuid, capabilities]}\n"
        "      - {path: /srv/app1/data, allow: [fifos]}\n",
        1,
    )
    fleet = parse_fleet(text, "fleet.yaml")
    assert [entry.allow[0].value for entry in fleet.service("app1").allow_special] == ["setuid", "fifos"]
    outside = text.replace("{path: /srv/app1/data, allow: [fifos]}", "{path: /usr/bin, allow: [setuid]}")
    [problem] = problems_of(outside)
    assert "services.0.allow_special.1.path: /usr/bin is not inside a path of this service" in problem
    unknown = text.replace("allow: [fifos]", "allow: [everything]")
    assert any("allow_special.1.allow.0" in problem for problem in problems_of(unknown))
    relative = text.replace("{path: /srv/app1/data,", "{path: srv/app1/data,")
    assert any("allow_special.1.path: 'srv/app1/data' is relative" in problem for problem in problems_of(relative))


# ----- bounded input: size, aliases, duplicate keys, and values parsed as their use parses them -----


def test_an_alias_bomb_is_refused_at_once():
    """Nine levels of nine aliases expand to 387 million strings; refused before anything walks it."""
    import time

    bomb = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
        f"{chr(98 + level)}: &{chr(98 + level)} [{', '.join([f'*{chr(97 + level)}'] * 9)}]\n" for level in range(8)
    )
    started = time.monotonic()
    [problem] = problems_of(bomb)
    assert time.monotonic() - started < 5  # was: busy past 60 s and 5.8 GB
    assert problem.startswith("fleet.yaml:1: (top): not valid YAML: expands to more than 200000 values")
    many = "x: &x 1\n" + "".join(f"k{number}: *x\n" for number in range(101))
    [problem] = problems_of(many)
    assert "more than 100 aliases" in problem and problem.startswith(f"fleet.yaml:{line_of(many, 'k100:')}:")


def test_deep_nesting_and_huge_numbers_are_problems_not_crashes():
    """Each would otherwise end in a RecursionError or Python's int-digits ValueError (exit 1, "a bug")."""
    deep = EXAMPLE + "extra: " + "[" * 5000 + "]" * 5000 + "\n"
    [problem] = problems_of(deep)
    assert f"fleet.yaml:{line_of(deep, 'extra:')}: (top): not valid YAML: nested more than 64 levels deep" in problem
    huge = EXAMPLE.replace("  copies_to_keep: 4\n", "  copies_to_keep: " + "9" * 5000 + "\n", 1)
    [problem] = problems_of(huge)
    assert f"fleet.yaml:{line_of(huge, 'copies_to_keep: 999')}: (top): not valid YAML: a number of more than 30 digits" in problem


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        (
            "  copies_to_keep: 4\n",
            "  copies_to_keep: 100000000000000000000\n",
            "defaults.copies_to_keep",
            "less than or equal to 1000",
        ),
        ("uid_min: 2000 ", "uid_min: 99999999999 ", "services.0.accounts.uid_min", "less than or equal to 4294967294"),
    ],
)
def test_absurd_numbers_are_refused_with_their_field(old, new, field, words):
    text = EXAMPLE.replace(old, new, 1)
    assert text != EXAMPLE
    [problem] = problems_of(text)
    assert problem == f"fleet.yaml:{line_of(text, new.strip())}: {field}: Input should be {words}"


def test_a_few_aliases_still_work():
    text = EXAMPLE.replace('schedule: "30 2 * * *"', 'schedule: &nightly "30 2 * * *"\n      check_schedule: *nightly')
    assert parse_fleet(text).services[0].backup.check_schedule == "30 2 * * *"


def test_a_duplicate_key_is_refused_with_its_line():
    text = EXAMPLE.replace(
        "  rpo_hours: 12\n  copies_to_keep: 4\n", "  rpo_hours: 12\n  rpo_hours: 9999\n  copies_to_keep: 4\n", 1
    )
    [problem] = problems_of(text)
    first = line_of(text, "rpo_hours: 12")
    assert problem == (
        f"fleet.yaml:{first + 1}: defaults.rpo_hours: key 'rpo_hours' is written twice in this "
        f"mapping (first on line {first}); YAML would keep only the last: keep one"
    )


def test_an_oversized_fleet_file_is_refused_unread(tmp_path):
    from hotspare.fleet.load import MAX_FLEET_BYTES, load_fleet

    big = tmp_path / "fleet.yaml"
    big.write_bytes(EXAMPLE.encode() + b"#" * MAX_FLEET_BYTES)
    with pytest.raises(FleetError, match=r"fleet.yaml:0: \(top\): larger than 4 MiB: refused"):
        load_fleet(big)


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        ('schedule: "30 2 * * *"', 'schedule: "0 0 31 2 *"', "services.0.backup.schedule", "not a usable cron line"),
        ('drill_schedule: "0 5 1 * *"', 'drill_schedule: "61 5 * * *"', "services.0.drill_schedule", "not a usable cron line"),
        (
            'replication_schedule: ["0 1 * * *", "0 13 * * *"]',
            'replication_schedule: ["0 1 * * *", "H 13 * * *"]',
            "defaults.replication_schedule.1",
            "cron line",
        ),
        ('phone: "+15550100"', "phone: x", "contacts.0.phone", "'x' is not a phone number in international form"),
        ('phone: "+15550100"', 'phone: "5550100"', "contacts.0.phone", "not a phone number in international form"),
        ("email: dana@example.test", "email: dana", "contacts.0.email", "'dana' is not an e-mail address"),
        (
            "email: dana@example.test",
            'email: "dana@example.test\\r\\nBcc: all@example.test"',
            "contacts.0.email",
            "is not an e-mail address",
        ),
        ("sender: hotspare@example.test", "sender: hotspare@@example.test", "mail.sender", "is not an e-mail address"),
        (
            "health_url: http://app1.lab.test:8080/health.txt",
            "health_url: app1.lab.test/health.txt",
            "services.0.health_url",
            "is not an http(s) URL with a host",
        ),
        (
            "health_url: http://app1.lab.test:8080/health.txt",
            "health_url: 'http://'",
            "services.0.health_url",
            "is not an http(s) URL with a host",
        ),
        ("timezone: UTC", "timezone: Mars/Olympus", "defaults.timezone", "'Mars/Olympus' is not a time zone"),
        ("  rpo_hours: 12\n  copies", "  rpo_hours: .inf\n  copies", "defaults.rpo_hours", "finite number"),
        ("  rpo_hours: 12\n  copies", "  rpo_hours: 1e300\n  copies", "defaults.rpo_hours", "1e+300 is longer than ten years"),
    ],
)
def test_check_parses_every_value_as_its_use_does(old, new, field, words):
    """What `hotspare schedule`, deployments, paging, mail and probes would reject later, the check
    rejects now, with file, line and field."""
    text = EXAMPLE.replace(old, new, 1)
    assert text != EXAMPLE
    problems = problems_of(text)
    expected_line = line_of(text, new.strip().splitlines()[0].split(":")[0] + ":", 1)
    matching = [problem for problem in problems if f": {field}: " in problem and words in problem]
    assert matching, problems
    assert matching[0].startswith("fleet.yaml:") and int(matching[0].split(":")[1]) >= expected_line


def test_values_parse_the_way_their_use_does():
    from hotspare.fleet.values import e164

    assert e164("+1 555 0101") == e164("+15550101") == "+15550101"
    assert e164("+49 (30) 123-456") == "+4930123456"
    with pytest.raises(ValueError, match="international form"):
        e164("030 123456")


def test_load_dry_run_shows_the_changes_and_the_diff_and_changes_nothing(home, tmp_path, capsys):
    from hotspare.cli import main
    from hotspare.inventory import session
    from hotspare.inventory.models import FleetDocumentRow, ServerRow

    example = Path(__file__).parents[1] / "data" / "fleet-basic.yaml"
    assert main(["fleet", "load", str(example), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "added    server prod-east" in out and f"+++ file: {example}" in out and "nothing was changed" in out
    with session() as db:
        assert db.get(FleetDocumentRow, 1) is None and db.get(ServerRow, "prod-east") is None

    assert main(["fleet", "load", str(example)]) == 0
    changed = tmp_path / "fleet-changed.yaml"
    changed.write_text(example.read_text().replace("address: 10.211.77.11", "address: 10.211.77.99"))
    capsys.readouterr()
    assert main(["fleet", "load", str(changed), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "changed  server prod-east (address)" in out
    assert "-    address: 10.211.77.11" in out and "+    address: 10.211.77.99" in out
    with session() as db:
        assert db.get(ServerRow, "prod-east").address == "10.211.77.11"  # still what was loaded
    assert main(["fleet", "load", str(example), "--dry-run"]) == 0
    assert "the inventory already matches the file" in capsys.readouterr().out
