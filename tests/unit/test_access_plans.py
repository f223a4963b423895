"""The pure parts of access by role: the proxy's rules, the database grants, who may approve,
and who counts as a person for readiness (no lab; the lab tests are test_access_roles.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from hotspare.planning import api_access, database_roles
from hotspare.planning.api_access import (
    APPROVER,
    CONTROL,
    OPERATOR,
    VIEWER,
    WORKER,
    Identity,
)

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
IDENTITIES = [
    Identity("control", CONTROL),
    Identity("worker-east", WORKER, ("lab-ssh", "lab-tsig")),
    Identity("ada", VIEWER),
    Identity("otto", OPERATOR),
    Identity("april", APPROVER),
]


def render(identities=IDENTITIES) -> str:
    return api_access.render_nginx(identities, listen="10.0.0.5:4200", upstream="127.0.0.1:4200", folder="/var/tmp/x/proxy")


def decide(config: str, user: str, method: str, path: str, args: str = "") -> str:
    """Evaluate the rendered maps the way nginx does (first matching regex wins)."""

    def lookup(name: str, key: str) -> str:
        block = re.search(r"map \S+ \$" + name + r" \{\n(.*?)\n  \}", config, re.DOTALL).group(1)
        default = "refused"
        for line in block.splitlines():
            line = line.strip()
            if line.startswith("default"):
                default = line.split()[1].rstrip(";")
                continue
            pattern, value = line.rsplit(" ", 1)
            pattern = pattern.strip('"')
            if pattern.startswith("~") and re.search(pattern[1:].replace("\\|", "[|]"), key):
                return value.rstrip(";")
            if not pattern.startswith("~") and pattern == key:
                return value.rstrip(";")
        return default

    role = lookup("hotspare_role", user).strip('"')
    secrets = lookup("hotspare_secrets", f"{user}|{method}|{path}|{args}")
    if secrets in ("prefect", "refused"):
        return secrets
    return lookup("hotspare_by_role", f"{role}|{method}|{path}")


@pytest.mark.parametrize(
    ("user", "method", "path", "args", "expected"),
    [
        ("ada", "POST", "/api/flow_runs/filter", "", "prefect"),
        ("ada", "GET", "/api/flow_runs/7a1c9a5e-0000-4000-8000-000000000001", "", "prefect"),
        ("ada", "POST", "/api/flow_runs/7a1c9a5e-0000-4000-8000-000000000001/resume", "", "refused"),
        ("ada", "POST", "/api/flow_runs/7a1c9a5e-0000-4000-8000-000000000001/set_state", "", "refused"),
        ("ada", "POST", "/api/deployments/7a1c9a5e-0000-4000-8000-000000000001/create_flow_run", "", "refused"),
        ("ada", "GET", "/api/events/in", "", "refused"),
        ("otto", "POST", "/api/deployments/7a1c9a5e-0000-4000-8000-000000000001/create_flow_run", "", "prefect"),
        ("otto", "POST", "/api/flow_runs/7a1c9a5e-0000-4000-8000-000000000001/resume", "", "refused"),
        ("april", "POST", "/api/flow_runs/7a1c9a5e-0000-4000-8000-000000000001/resume", "", "prefect"),
        ("april", "POST", "/api/flow_runs/7a1c9a5e-0000-4000-8000-000000000001/set_state", "", "refused"),
        ("worker-east", "POST", "/api/flow_runs/7a1c9a5e-0000-4000-8000-000000000001/set_state", "", "prefect"),
        ("worker-east", "POST", "/api/flow_runs/7a1c9a5e-0000-4000-8000-000000000001/resume", "", "refused"),
        ("worker-east", "PATCH", "/api/work_pools/hotspare-west", "", "refused"),
        ("worker-east", "POST", "/api/deployments/", "", "refused"),
        ("worker-east", "GET", "/api/block_types/slug/s/block_documents/name/lab-tsig", "include_secrets=true", "prefect"),
        ("worker-east", "GET", "/api/block_types/slug/s/block_documents/name/lab-restic-app1", "include_secrets=true", "refused"),
        (
            "worker-east",
            "GET",
            "/api/block_types/slug/s/block_documents/name/lab-tsig",
            "include_secrets=false&include_secrets=true",
            "refused",
        ),
        ("worker-east", "GET", "/api/block_types/slug/s/block_documents/name/lab-tsigx", "include_secrets=true", "refused"),
        ("worker-east", "POST", "/api/block_documents/filter", "", "refused"),
        ("april", "GET", "/api/block_types/slug/s/block_documents/name/lab-tsig", "include_secrets=true", "refused"),
        ("april", "GET", "/api/block_types/slug/s/block_documents/name/lab-tsig", "", "prefect"),
        ("control", "POST", "/api/block_documents/filter", "", "prefect"),
        ("control", "DELETE", "/api/deployments/7a1c9a5e-0000-4000-8000-000000000001", "", "prefect"),
        ("nobody-known", "GET", "/api/flow_runs/filter", "", "refused"),
    ],
)
def test_the_proxy_decides_by_role_method_path_and_named_blocks(user, method, path, args, expected):
    assert decide(render(), user, method, path, args) == expected


def test_the_proxy_overwrites_provenance_and_the_upstream_login_and_refuses_odd_paths():
    config = render()
    assert "proxy_set_header Prefect-Automation-Name $hotspare_provenance_name;" in config
    assert config.count('proxy_set_header Authorization "";') == 2  # no password goes past nginx
    assert "underscores_in_headers off;" in config
    assert api_access.parse_provenance("hotspare:approver:april") == ("approver", "april")
    assert api_access.parse_provenance("hotspare:king:april") is None
    assert api_access.parse_provenance("My automation") is None


@pytest.mark.parametrize(
    "identities",
    [
        [Identity("Ada Lovelace", VIEWER)],
        [Identity("ada", "king")],
        [Identity("ada", VIEWER, ("lab-ssh",))],
        [Identity("worker-east", WORKER, ('x" prefect; "~.*',))],
        [Identity("ada", VIEWER), Identity("ada", APPROVER)],
    ],
)
def test_a_bad_identity_is_refused_before_any_configuration_is_written(identities):
    with pytest.raises(ValueError):
        render(identities)


def test_the_approver_is_the_newest_record_made_before_the_answer():
    records = [
        ("hotspare-approver-1", NOW, "april"),
        ("hotspare-approver-2", NOW + timedelta(seconds=5), "bert"),
        ("paused-1-response", NOW + timedelta(seconds=1), "mallory"),
        ("hotspare-approver-3", NOW + timedelta(seconds=9), "carla"),
    ]
    assert api_access.approver_from_records(records, NOW + timedelta(seconds=6)) == "bert"
    assert api_access.approver_from_records(records, NOW - timedelta(seconds=1)) is None
    assert api_access.approver_from_records([("hotspare-approver-1", NOW, "Not A Name")], NOW) is None


def test_an_up_front_approval_counts_only_from_an_approver_the_control_site_or_a_parent_run():
    from flows.approval import RunProvenance, up_front_by_identity
    from hotspare.planning.approval import Approval

    given = Approval("failover of app1", "0123456789abcdef", "typed name", "up front (yes)")

    def by(role: str, name: str, subflow: bool = False) -> RunProvenance:
        return RunProvenance(True, (role, name), subflow, "id")

    assert up_front_by_identity(given, by(APPROVER, "april"))[0].operator == "april"
    assert up_front_by_identity(given, by(CONTROL, "control"))[0] == given
    assert up_front_by_identity(given, by(WORKER, "worker-east", subflow=True))[0] == given
    refused, sentence = up_front_by_identity(given, by(OPERATOR, "otto"))
    assert refused is None and "otto (operator)" in sentence and "only an approver" in sentence
    assert up_front_by_identity(given, by(WORKER, "worker-east"))[0] is None
    assert up_front_by_identity(given, RunProvenance(False, None, False, None))[0] == given  # no proxy: as before


def test_database_grants_keep_workers_off_the_fleet_definition_and_everyone_out_of_prefect():
    cluster = database_roles.cluster_statements(set())
    assert 'REVOKE ALL ON DATABASE "prefect" FROM PUBLIC' in cluster
    assert all("SUPERUSER" not in line or "NOSUPERUSER" in line for line in cluster)
    grants = database_roles.inventory_statements(["run", "service", "fleet_document", "orchestrator_identity"])
    assert 'GRANT INSERT, UPDATE, DELETE ON TABLE "run" TO "hotspare_worker"' in grants
    assert not any('ON TABLE "fleet_document" TO "hotspare_worker"' in line and "SELECT" not in line for line in grants)
    service = next(line for line in grants if 'ON TABLE "service" TO "hotspare_worker"' in line and "UPDATE" in line)
    assert '"active_server"' in service and '"spec"' not in service and '"planned_production"' not in service
    with pytest.raises(ValueError):
        database_roles.ident("")


def test_readiness_counts_people_not_shared_or_machine_logins():
    from hotspare.planning.readiness import RunFact, is_person, judge_readiness

    assert [name for name in ("root", "worker-east", "control", "hotspare", "april", "Dana Ops") if is_person(name)] == [
        "april",
        "Dana Ops",
    ]
    runs = [
        RunFact("failover", "app1", NOW - timedelta(days=1), "ok", name, "emergency") for name in ("root", "worker-west", "april")
    ]
    [failover] = [item for item in judge_readiness([], [], runs, [], NOW).procedures if item.procedure == "failover"]
    assert failover.people == ("april",)


def test_a_persons_own_api_login_names_who_runs_a_command(monkeypatch):
    import getpass

    from hotspare.inventory.runs import current_operator

    monkeypatch.delenv("HOTSPARE_OPERATOR", raising=False)
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "april:a-long-random-password")
    assert current_operator() == "april"
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "hotspare:the-shared-string")  # not a person: the login name
    assert current_operator() == getpass.getuser()
    monkeypatch.setenv("HOTSPARE_OPERATOR", "Dana Ops")  # named explicitly (a shared service account)
    assert current_operator() == "Dana Ops"
