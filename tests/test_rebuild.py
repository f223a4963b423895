"""Rebuild of app1 on a standby after production and mirror are both lost, in the real lab.

Afterwards the lab is put back as it was: hosts healed, DNS record back to production
(compare-and-swap), inventory row reset, the app stopped and the accounts removed on the standby.
"""

from __future__ import annotations

import base64
import stat
import uuid
from pathlib import Path

import paramiko
import pytest

from lab_helpers import wait_for

pytestmark = pytest.mark.lab

SERVICE = "app1"


def _dns(fleet):
    from hotspare import access

    return access.dns_server(fleet, "lab.test")


def _password_login(address: str, host_key: str, user: str, password: str) -> str:
    """Log in with a password (pinned host key) and return `id -u` (the temporary login shares
    the service account's uid, so `id -un` would name the service account)."""
    client = paramiko.SSHClient()
    key_type, blob = host_key.split()[:2]
    client.get_host_keys().add(address, key_type, paramiko.PKey.from_type_string(key_type, base64.b64decode(blob)))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(address, username=user, password=password, timeout=10, allow_agent=False, look_for_keys=False)
        _stdin, stdout, _stderr = client.exec_command("id -u")
        return stdout.read().decode().strip()
    finally:
        client.close()


def test_rebuild_on_standby_serves_newest_backup_with_expiring_temporary_logins(lab, lab_env, fleet):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from sqlmodel import select

    from flows.backup import backup
    from flows.rebuild import expire_temporary_accounts, rebuild
    from hotspare.adapters import dns
    from hotspare.inventory import session
    from hotspare.inventory.backup_models import TemporaryAccountRow
    from hotspare.inventory.models import RunRow, ServiceRow
    from hotspare.probes import http_get_via_dns

    production = fleet.server("prod-east")
    marker = f"marker-{uuid.uuid4().hex}.txt"
    marker_text = f"written before the backup {uuid.uuid4().hex}\n"
    data = Path(lab_env["hosts"]["prod-east"]["root"]) / "srv/app1/data"
    (data / marker).write_text(marker_text)
    # hostile data from a compromised production: never live on the standby as planted
    suid, link = f"suid-{uuid.uuid4().hex[:8]}", f"shadow-{uuid.uuid4().hex[:8]}"
    (data / suid).write_text("#!/bin/sh\nid\n")
    (data / suid).chmod(0o4755)
    (data / link).symlink_to("/etc/shadow")
    snapshot = backup(service=SERVICE)[SERVICE]["snapshot_id"]

    lab.fail("prod-east")
    lab.fail("mirror-west")
    standby = None
    try:
        planned = rebuild(service=SERVICE, dry_run=True)
        digest = planned["plan_digest"]
        standby = fleet.server(planned["plan"]["standby"])
        assert planned["plan"]["snapshot_id"].startswith(snapshot)
        state = rebuild(service=SERVICE, approved_plan_digest=digest, return_state=True)
        assert state.is_completed(), state.message
        result = state.result()
        flow_run_id = state.state_details.flow_run_id

        # The app answers through its DNS name, from the standby, with the newest snapshot's data.
        server = _dns(fleet)
        status, body, address = http_get_via_dns(
            f"http://app1.lab.test:8080/{marker}", lambda name: dns.read_addresses(server, name)
        )
        assert (status, body.decode(), address) == (200, marker_text, standby.address)
        placed = Path(lab_env["hosts"][standby.name]["root"]) / "srv/app1/data"
        assert not (placed / suid).stat().st_mode & stat.S_ISUID
        assert not (placed / link).is_symlink() and (placed / link).read_bytes() == b""
        neutralised = "\n".join(result["placed"]["live_data"]["neutralised"])
        assert f"/srv/app1/data/{link} (-> /etc/shadow): replaced by an empty file" in neutralised
        assert f"setuid bit at /srv/app1/data/{suid}: bit cleared" in neutralised
        with session() as db:
            row = db.get(ServiceRow, SERVICE)
            assert (row.active_server, row.mirror_server, row.state) == (standby.name, None, "unprotected")
            run = db.exec(select(RunRow).where(RunRow.kind == "rebuild").order_by(RunRow.id.desc())).first()
            assert run.outcome == "ok"

        # Temporary logins: delivered in a root-only file, usable, then disabled at expiry.
        delivery = Path(result["delivery_file"])
        assert stat.S_IMODE(delivery.stat().st_mode) == 0o600
        logins = {
            line.split("\t")[0]: line.split("\t")[1] for line in delivery.read_text().splitlines() if not line.startswith("#")
        }
        assert set(logins) == {"tmp-app1-web", "tmp-app1-batch"}
        assert _password_login(standby.address, standby.host_key, "tmp-app1-web", logins["tmp-app1-web"]) == "2001"
        with pytest.raises(paramiko.AuthenticationException):
            _password_login(standby.address, standby.host_key, "tmp-app1-web", "not-the-password")

        from datetime import datetime, timedelta, timezone

        expired = expire_temporary_accounts(now=datetime.now(timezone.utc) + timedelta(hours=73))
        assert {"tmp-app1-web@" + standby.name, "tmp-app1-batch@" + standby.name} <= set(expired["disabled"])
        with pytest.raises(paramiko.AuthenticationException):
            _password_login(standby.address, standby.host_key, "tmp-app1-web", logins["tmp-app1-web"])
        with session() as db:
            rows = db.exec(select(TemporaryAccountRow).where(TemporaryAccountRow.flow_run_id == str(flow_run_id))).all()
            assert {r.user_name for r in rows} == set(logins) and all(r.disabled_at for r in rows)
            inventory_text = " ".join(repr(r.model_dump()) for r in rows) + repr(run.model_dump())

        # No temporary password anywhere but the delivery file: logs, artifacts, inventory, results.
        with get_client(sync_client=True) as client:

            def rebuild_logs():
                logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
                return logs if any("rebuilt on" in log.message for log in logs) else None

            logs = wait_for("the rebuild's summary log line", rebuild_logs)
            everything = "\n".join(log.message for log in client.read_logs()) + "\n".join(log.message for log in logs)
            everything += "\n".join(str(artifact.data) for artifact in client.read_artifacts())
        everything += inventory_text + repr(result) + str(state.message)
        for password in logins.values():
            assert password not in everything
    finally:
        (data / suid).unlink(missing_ok=True)
        (data / link).unlink(missing_ok=True)
        lab.heal("prod-east")
        lab.heal("mirror-west")
        _restore_lab(fleet, production.address, standby)


def _restore_lab(fleet, production_address: str, standby) -> None:
    """Put app1 back on prod-east: DNS (CAS), inventory, and a clean standby."""
    from hotspare import access
    from hotspare.adapters import dns
    from hotspare.inventory import session
    from hotspare.inventory.models import ServiceRow

    server = _dns(fleet)
    zone = fleet.zone("lab.test")
    current = dns.read_addresses(server, "app1.lab.test")
    if current != [production_address]:
        dns.compare_and_swap_address(
            server, access.tsig_key(zone.tsig_key_block), "app1.lab.test", current[0], production_address, zone.ttl
        )
    with session() as db:
        row = db.get(ServiceRow, SERVICE)
        row.active_server, row.mirror_server, row.state = "prod-east", "mirror-west", "protected"
    if standby is None:
        return
    with access.connect(fleet, standby.name) as connection:
        connection.run(["/srv/app1/app/ctl", "stop"], check=False)
        for user in ("tmp-app1-web", "tmp-app1-batch", "app1-web", "app1-batch"):
            connection.run(["userdel", user], check=False)
        for group in ("app1-web", "app1-batch"):
            connection.run(["groupdel", group], check=False)
        connection.run(["rm", "-rf", "--", "/srv/app1", "/etc/app1"], check=False)
