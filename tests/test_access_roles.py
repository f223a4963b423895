"""Every worker, command and person holds only what its role needs: attacked in the lab.

The control site (PostgreSQL with a user per role, the Prefect server behind nginx with a login
per person and per worker) starts once for the module, without facility workers: a worker's
credentials are what its environment would hold (its API login, its inventory URL), used here
directly, and a worker's gated run is a separate process under that login.

- The database: no role's user is a superuser or opens Prefect's database; a worker's user
  cannot drop or truncate tables, load another fleet, re-identify the orchestrator, change a
  service's specification or run programs; it does write its run records (a real replication
  under the worker's logins is the positive control).
- The API: a viewer reads runs but cannot resume a gated run, start one or read a secret (also
  not with a repeated or encoded query, another path form or the documents filter); an
  operator cannot resume; a worker reads the blocks its runs need and no backup password; an
  approver resumes and is recorded by the name the proxy authenticated, not the one typed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from hotspare.lab import control

from lab_helpers import poll

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[1]
RESTIC = "hotspare-backup-repository-password"
TSIG = "hotspare-dns-update-key"


@pytest.fixture(scope="module")
def site(lab, lab_env, fleet):
    """The control site with the fleet, its blocks and the orchestrator marker; the session's
    inventory and API again afterwards."""
    from prefect.settings import (
        PREFECT_API_AUTH_STRING,
        PREFECT_API_URL,
        temporary_settings,
    )

    from hotspare.cli import main

    try:
        control.start_site(lab)
        client = control.client_environment(lab)
        with (
            pytest.MonkeyPatch.context() as patch,
            temporary_settings(
                updates={PREFECT_API_URL: client["PREFECT_API_URL"], PREFECT_API_AUTH_STRING: client["PREFECT_API_AUTH_STRING"]}
            ),
        ):
            patch.setenv("HOTSPARE_DB_URL", client["HOTSPARE_DB_URL"])
            lab.register_blocks()
            assert main(["fleet", "load", lab_env["fleet_file"]]) == 0
            assert main(["fleet", "claim", "--takeover"]) == 0  # the control site holds the fleet meanwhile
            yield {"client": client, "databases": control.database_urls(lab), "api": client["PREFECT_API_URL"]}
    finally:
        forget_credentials()
        control.stop_site(lab)
        from tasks.orchestrator import forget_checks

        forget_checks()
        assert main(["fleet", "claim", "--takeover"]) == 0  # the session's inventory holds the fleet again


def forget_credentials() -> None:
    """Blocks loaded through another API login must not serve the next test from memory."""
    from hotspare import access

    access.close_connections()
    for cached in (access.login, access.tsig_key, access.bmc_login):
        cached.cache_clear()


def login(lab, name: str) -> tuple[str, str]:
    """(user, password) of an identity, from the control site's private folder."""
    user, _, password = control.identity_environment(lab, name)["PREFECT_API_AUTH_STRING"].partition(":")
    return user, password


def call(site, lab, name: str, method: str, path: str, **arguments) -> httpx.Response:
    return httpx.request(method, site["api"] + path, auth=login(lab, name), timeout=30, **arguments)


@contextmanager
def as_identity(lab, name: str, database_url: str | None = None):
    """This process's Prefect client (and inventory) as ``name`` would hold them."""
    from prefect.settings import (
        PREFECT_API_AUTH_STRING,
        PREFECT_API_URL,
        temporary_settings,
    )

    environment = control.identity_environment(lab, name)
    forget_credentials()
    with (
        pytest.MonkeyPatch.context() as patch,
        temporary_settings(
            updates={
                PREFECT_API_URL: environment["PREFECT_API_URL"],
                PREFECT_API_AUTH_STRING: environment["PREFECT_API_AUTH_STRING"],
            }
        ),
    ):
        if database_url:
            patch.setenv("HOTSPARE_DB_URL", database_url)
        try:
            yield
        finally:
            forget_credentials()


# --- the database ---------------------------------------------------------------------------


def connect(url: str, database: str | None = None):
    import psycopg
    from sqlalchemy.engine import make_url

    parts = make_url(url)
    return psycopg.connect(
        host=parts.host,
        port=parts.port,
        user=parts.username,
        password=parts.password,
        dbname=database or parts.database,
        connect_timeout=10,
        autocommit=True,
    )


def test_no_database_user_of_a_role_is_a_superuser_or_opens_prefects_database(site):
    import psycopg

    for role, url in site["databases"].items():
        with connect(url) as connection:
            row = connection.execute(
                "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
            assert row == (False, False, False), role
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            connect(url, "prefect")
    # the same server lets Prefect's own user in: the refusal is about the role, not the address
    assert "hotspare_prefect" not in site["databases"]


@pytest.mark.parametrize(
    "statement",
    [
        "DROP TABLE run",
        "TRUNCATE run",
        "CREATE TABLE planted (x int)",
        "ALTER TABLE run ADD COLUMN planted int",
        "UPDATE fleet_document SET text = ''",
        "INSERT INTO fleet_document (id, filename, text, loaded_at) VALUES (2, 'x', 'x', now())",
        "UPDATE service SET planned_production = 'standby-east'",
        "UPDATE service SET spec = '{}'",
        "DELETE FROM service",
        "UPDATE server SET address = '10.211.0.66'",
        "UPDATE orchestrator_identity SET orchestrator_id = 'planted'",
        "DELETE FROM orchestrator_identity",
        "COPY run TO PROGRAM 'id'",
        "SELECT pg_read_file('/etc/hostname')",
    ],
)
def test_a_workers_database_user_cannot_change_the_fleet_or_the_schema(site, statement):
    import psycopg

    with connect(site["databases"]["worker"]) as connection, pytest.raises(psycopg.errors.InsufficientPrivilege):
        connection.execute(statement)


def test_the_reporting_user_reads_and_writes_nothing(site):
    import psycopg

    with connect(site["databases"]["reporting"]) as connection:
        assert connection.execute("SELECT count(*) FROM service").fetchone()[0] >= 1
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute("UPDATE service SET state = 'unprotected'")


def test_a_run_works_with_the_workers_database_user_and_api_login(site, lab):
    """The positive control: a replication of app1 with only what east's worker holds."""
    from sqlmodel import select

    from flows.replicate import replicate_service
    from hotspare.inventory.db import session
    from hotspare.inventory.models import RunRow

    with as_identity(lab, "worker-east", site["databases"]["worker"]):
        outcome = replicate_service("app1")
        assert outcome["outcome"] == "ok", outcome
        with session() as db:
            kinds = {row.kind for row in db.exec(select(RunRow).where(RunRow.service == "app1")).all()}
    assert "replicate" in kinds
    # and what that run wrote is what the worker's grants allow: a service's state columns
    with connect(site["databases"]["worker"]) as connection:
        connection.execute("UPDATE service SET updated_at = updated_at WHERE name = 'app1'")


# --- the API: secrets -------------------------------------------------------------------------


def test_a_worker_loads_the_blocks_its_runs_need_and_no_backup_password(site, lab):
    """``Block.load`` asks GET /block_types/slug/S/block_documents/name/N?include_secrets=true."""
    from prefect.exceptions import PrefectHTTPStatusError

    from blocks.credentials import BackupRepositoryPassword, DnsUpdateKey, PhoneProvider
    from hotspare.adapters.errors import MissingConfiguration
    from tasks.backup import repository_password

    stored = json.loads((lab.directory / "secrets.json").read_text())
    with as_identity(lab, "worker-east"):
        assert DnsUpdateKey.load("lab-tsig").secret.get_secret_value() == stored["tsig"]["secret"]
        for block_class, name in ((BackupRepositoryPassword, "lab-restic-app1"), (PhoneProvider, "lab-phone-primary")):
            with pytest.raises(PrefectHTTPStatusError) as refused:
                block_class.load(name)
            assert refused.value.response.status_code == 403
        # what a backup run on east's worker says: one sentence, no traceback
        with pytest.raises(MissingConfiguration, match="may not read its secrets"):
            repository_password("lab-restic-app1")
    with as_identity(lab, "control"):  # the control site's backup runs do read it
        assert (
            BackupRepositoryPassword.load("lab-restic-app1").password.get_secret_value() == stored["restic"]["passwords"]["app1"]
        )


def test_a_worker_reads_the_bmc_block_of_the_facility_it_fences_and_no_other(site, lab):
    """A failover of a service in east runs on west's worker, which powers prod-east off: west's
    worker reads east's BMC block, not west's (its own facility's servers are never its to
    fence); east's the other way round; the control site reads both."""
    from prefect.exceptions import PrefectHTTPStatusError

    from blocks.credentials import BmcCredentials
    from hotspare.lab import bmc

    for worker, fences, never in (("worker-west", "east", "west"), ("worker-east", "west", "east")):
        expected = json.loads(bmc.credentials_file(lab.directory, fences).read_text())["password"]
        with as_identity(lab, worker):
            assert BmcCredentials.load(bmc.block_name(fences)).password.get_secret_value() == expected
            with pytest.raises(PrefectHTTPStatusError) as refused:
                BmcCredentials.load(bmc.block_name(never))
            assert refused.value.response.status_code == 403
    with as_identity(lab, "control"):
        assert {BmcCredentials.load(bmc.block_name(name)).username for name in ("east", "west")} == {"admin"}


def test_no_other_request_form_gives_a_worker_or_a_person_a_secret(site, lab):
    restic_path = f"/block_types/slug/{RESTIC}/block_documents/name/lab-restic-app1"
    document = call(site, lab, "control", "GET", restic_path).json()
    attempts = [
        ("GET", restic_path + "?include_secrets=true", {}),
        ("GET", restic_path + "?include_secrets=false&include_secrets=true", {}),
        ("GET", restic_path + "?include%5fsecrets=true", {}),
        ("GET", restic_path + "?include_secrets=1", {}),
        ("GET", f"/block_documents/{document['id']}?include_secrets=true", {}),
        ("GET", f"/block_types/slug/{RESTIC}/block_documents?include_secrets=true", {}),
        ("POST", "/block_documents/filter", {"json": {"include_secrets": True}}),
        ("PATCH", f"/block_documents/{document['id']}", {"json": {"data": {"password": "planted"}}}),
    ]
    for name in ("worker-east", "worker-west", "ada", "otto", "april"):
        for method, path, extra in attempts:
            response = call(site, lab, name, method, path, **extra)
            assert response.status_code == 403, (name, method, path, response.status_code, response.text[:200])
            assert "planted" not in response.text and 'password":"' not in response.text
    # another spelling of the path reaches nothing either
    response = call(site, lab, "ada", "GET", f"/block_types/slug/{RESTIC}//block_documents/name/lab-restic-app1")
    assert response.status_code == 400
    # positive control: without secrets a person reads the document, its secret masked
    masked = call(site, lab, "ada", "GET", restic_path)
    assert masked.status_code == 200 and masked.json()["data"]["password"] == "********"


def test_a_viewer_reads_runs_but_starts_nothing_and_emits_no_events(site, lab):
    assert call(site, lab, "ada", "POST", "/flow_runs/filter", json={"limit": 1}).status_code == 200
    assert call(site, lab, "ada", "POST", f"/deployments/{uuid.uuid4()}/create_flow_run", json={}).status_code == 403
    assert call(site, lab, "ada", "POST", "/flow_runs/", json={"flow_id": str(uuid.uuid4())}).status_code == 403
    assert call(site, lab, "ada", "POST", "/automations/", json={}).status_code == 403
    assert call(site, lab, "ada", "GET", "/events/in").status_code == 403
    wrong = httpx.post(site["api"] + "/flow_runs/filter", json={}, auth=("ada", "not-the-password"), timeout=30)
    assert wrong.status_code == 401


def test_what_an_operator_starts_carries_its_name_whatever_headers_it_sends(site, lab):
    """Prefect's ``created_by`` comes from headers; the proxy overwrites them with the login."""
    import base64

    flow = call(site, lab, "control", "POST", "/flows/", json={"name": "access-probe"}).json()
    deployment = call(
        site, lab, "control", "POST", "/deployments/", json={"name": "access-probe", "flow_id": flow["id"], "paused": True}
    ).json()
    forged = {
        "Prefect-Automation-Id": str(uuid.uuid4()),
        "Prefect-Automation-Name": base64.b64encode(b"hotspare:approver:april").decode(),
    }
    started = call(
        site,
        lab,
        "otto",
        "POST",
        f"/deployments/{deployment['id']}/create_flow_run",
        json={"state": {"type": "SCHEDULED"}},
        headers=forged,
    )
    assert started.status_code == 201, started.text
    run = call(site, lab, "control", "GET", f"/flow_runs/{started.json()['id']}").json()
    assert run["created_by"]["display_value"] == "hotspare:operator:otto"
    call(site, lab, "control", "DELETE", f"/deployments/{deployment['id']}")


# --- the API: the approval gate -------------------------------------------------------------


def paused_run(site, lab, subject: str) -> dict | None:
    response = call(
        site, lab, "control", "POST", "/flow_runs/filter", json={"flow_runs": {"state": {"type": {"any_": ["PAUSED"]}}}}
    )
    for run in response.json():
        if run["parameters"].get("subject") == subject:
            return run
    return None


def test_resuming_a_gated_run_needs_an_approver_who_is_recorded_by_the_proxys_name(site, lab, tmp_path):
    subject, digest = f"access probe {uuid.uuid4().hex[:8]}", "0123456789abcdef"
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_API")}
    environment.update(control.identity_environment(lab, "worker-east"))
    environment.update(
        {"HOTSPARE_API_PROXY": "1", "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}", "PREFECT_HOME": str(tmp_path / "prefect")}
    )
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "gated_flow.py"), subject, digest],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        run = poll(lambda: paused_run(site, lab, subject), 120, "the gated run to pause for approval")
        answer = {"run_input": {"decision": "approve", "plan_digest": digest, "operator": "Mallory Typed"}}
        for name in ("ada", "otto", "worker-east"):  # viewer, operator, and the run's own worker
            refused = call(site, lab, name, "POST", f"/flow_runs/{run['id']}/resume", json=answer)
            assert refused.status_code == 403, (name, refused.status_code, refused.text)
            assert call(site, lab, "control", "GET", f"/flow_runs/{run['id']}").json()["state"]["type"] == "PAUSED"
        resumed = call(site, lab, "april", "POST", f"/flow_runs/{run['id']}/resume", json=answer)
        assert resumed.status_code in (200, 201) and resumed.json()["status"] == "ACCEPT", resumed.text
        output, errors = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    assert process.returncode == 0, errors[-3000:]
    approval = json.loads(output.strip().splitlines()[-1])
    assert (approval["operator"], approval["digest"]) == ("april", digest)  # the login, not the typed name
    records = call(
        site,
        lab,
        "control",
        "POST",
        f"/flow_runs/{run['id']}/input/filter",
        json={"prefix": "hotspare-approver-", "limit": 10, "exclude_keys": []},
    ).json()
    assert [json.loads(record["value"]) for record in records] == ["april"]  # none for the refused three


def test_a_persons_shell_gets_their_own_login_and_the_read_only_inventory(site, lab, capsys):
    import shlex

    from hotspare.cli import main

    assert main(["lab", "env", "--exports", "--as", "april", "--dir", str(lab.directory)]) == 0
    lines = capsys.readouterr().out.splitlines()
    exported = dict(shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in lines if line.startswith("export "))
    assert exported["PREFECT_API_AUTH_STRING"] == ":".join(login(lab, "april"))
    assert exported["HOTSPARE_DB_URL"] == site["databases"]["reporting"]
    assert exported["HOTSPARE_API_PROXY"] == "1"
    # the site's issuer token yields certificates for any run of its pool: a person's shell drops it
    assert {"unset HOTSPARE_SSH_ISSUER_TOKEN", "unset HOTSPARE_SSH_ISSUER_URL"} <= set(lines)
    site_exports = {
        "HOTSPARE_SSH_ISSUER_URL": "http://issuer",
        "HOTSPARE_SSH_ISSUER_TOKEN": "site-token",
        "HOTSPARE_LAB_DIR": str(lab.directory),
        "PREFECT_API_AUTH_STRING": "control:secret",
    }
    viewer = control.person_shell(lab, "ada", site_exports)
    assert "HOTSPARE_SSH_ISSUER_TOKEN" not in viewer and "HOTSPARE_SSH_ISSUER_URL" not in viewer
    assert "site-token" not in viewer.values() and viewer["HOTSPARE_LAB_DIR"] == str(lab.directory)
    assert viewer["PREFECT_API_AUTH_STRING"] == ":".join(login(lab, "ada"))
    assert main(["lab", "env", "--exports", "--as", "worker-east", "--dir", str(lab.directory)]) == 1
    assert "the lab's people are ada, otto, april" in capsys.readouterr().err
