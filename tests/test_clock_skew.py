"""A production whose clock is 20 minutes ahead: the lab shows its sshd refusing a key that
expires 15 minutes from now by the orchestrator's clock, then a replication and a verification
that work all the same (the keys' expiry computed on production's clock) and name the skew.

The skewed host is the lab's model (``hotspare/lab/clocks.py``: libfaketime in that host's sshd
and its session programs; a kernel has one real-time clock).
"""

from __future__ import annotations

import logging
import subprocess
from datetime import datetime, timedelta, timezone

import pytest

from flows.replicate import replicate_service
from flows.verify import verify
from hotspare import access
from hotspare.keys import generate_ed25519
from hotspare.lab import clocks
from hotspare.lab.remote import ssh_argv
from hotspare.planning.transfer_keys import TRANSFER_KEYS_FILE
from tasks import clock_offsets

from lab_helpers import host_path, ssh, wait_for

SERVICE = "app1"
SKEW = 20 * 60
SENTENCE = "production {}'s clock is 20 min ahead of the orchestrator's"


@pytest.fixture
def production_ahead(lab, lab_env, fleet):
    """app1's production with its clock 20 minutes ahead, for this test only."""
    production = lab_env["services"][SERVICE]["production"]
    clocks.skew_clock(lab, production, SKEW)
    access.close_connections()  # sessions opened before the skew still read the machine's clock
    clock_offsets.forget()
    try:
        yield production
    finally:
        clocks.restore_clock(lab, production)
        access.close_connections()
        clock_offsets.forget()


def _login_with_expiry(lab_env, production: str, tmp_path, expiry: datetime) -> subprocess.CompletedProcess:
    """Log in to production with a fresh key whose line expires at ``expiry`` (the key is removed again)."""
    private, public = generate_ed25519("clock-test")
    key_file = tmp_path / f"key-{expiry:%H%M%S}"
    key_file.write_text(private)
    key_file.chmod(0o600)
    keys_file = host_path(lab_env, production, TRANSFER_KEYS_FILE)
    before = keys_file.read_text() if keys_file.exists() else ""
    keys_file.write_text(before + f'expiry-time="{expiry:%Y%m%d%H%M%S}Z" {public.strip()} clock-test\n')
    try:
        argv = ssh_argv(key_file, lab_env["ssh"]["known_hosts"], lab_env["hosts"][production]["address"], [["true"]])
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    finally:
        keys_file.write_text(before)


def test_the_skewed_hosts_sshd_judges_expiry_by_its_own_clock(production_ahead, lab_env, tmp_path):
    said = float(ssh(lab_env, production_ahead, "date", "+%s.%N").stdout)
    assert abs(said - datetime.now(timezone.utc).timestamp() - SKEW) < 30
    ours = datetime.now(timezone.utc) + timedelta(minutes=15)
    refused = _login_with_expiry(lab_env, production_ahead, tmp_path, ours)
    assert refused.returncode == 255 and "Permission denied" in refused.stderr
    accepted = _login_with_expiry(lab_env, production_ahead, tmp_path, ours + timedelta(seconds=SKEW))
    assert accepted.returncode == 0, accepted.stderr


def test_replication_keys_expire_by_productions_clock_and_the_skew_is_named(production_ahead):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    state = replicate_service(SERVICE, return_state=True)
    assert state.is_completed(), state.message
    assert state.result()["outcome"] == "ok"
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:

        def lines():
            found = [log.message for log in client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))]
            return found if any(SENTENCE.format(production_ahead) in line for line in found) else None

        named = wait_for("the run log line naming production's clock", lines, seconds=30)
    assert any("computed on production's clock" in line for line in named)


def test_a_pull_without_preflight_corrects_its_key_from_the_install_answer(production_ahead, caplog):
    assert replicate_service(SERVICE)["outcome"] == "ok"  # a current copy to verify
    clock_offsets.forget()  # as a process that never ran a preflight
    with caplog.at_level(logging.WARNING, logger="tasks.transfer_access"):
        result = verify([SERVICE], full=True)
    assert result[SERVICE]["passed"], result
    assert any(
        SENTENCE.format(production_ahead) in record.getMessage() and "installed again" in record.getMessage()
        for record in caplog.records
    )
    assert abs(clock_offsets.offset_of(production_ahead) - SKEW) < 30
