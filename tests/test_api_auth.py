"""The Prefect API refuses requests without the auth string.

Block documents hold the fleet's SSH keys, DNS update key and backup password, and
``GET /api/block_documents/{id}?include_secrets=true`` returns them in plain text to whoever the
API answers. Two real servers are checked: the session's test harness (every other test runs
against it, authenticated) and the server ``scripts/prefect-server.sh`` starts for the demo.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from lab_helpers import poll

ROOT = Path(__file__).resolve().parent.parent
SERVER_SCRIPT = ROOT / "scripts" / "prefect-server.sh"


def _filter_and_read(api_url: str, block_id: str, auth: tuple[str, str] | None) -> tuple[httpx.Response, httpx.Response]:
    """The two requests an intruder would send: list the block documents, read one with secrets."""
    with httpx.Client(base_url=api_url, auth=auth, timeout=30) as client:
        listed = client.post("/block_documents/filter", json={})
        read = client.get(f"/block_documents/{block_id}", params={"include_secrets": "true"})
    return listed, read


def _basic(auth_string: str) -> tuple[str, str]:
    user, _, password = auth_string.partition(":")
    return user, password


def test_harness_api_refuses_block_documents_without_the_auth_string(prefect_api):
    from prefect.blocks.system import Secret
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL

    api_url = PREFECT_API_URL.value()
    auth_string = PREFECT_API_AUTH_STRING.value()
    name = f"auth-probe-{uuid.uuid4().hex[:8]}"
    secret_value = f"secret-{uuid.uuid4().hex}"
    Secret(value=secret_value).save(name)  # this client authenticates: the save works
    block_id = str(Secret.load(name)._block_document_id)

    for refused_auth in (None, ("hotspare-test", "wrong-password")):
        listed, read = _filter_and_read(api_url, block_id, refused_auth)
        assert (listed.status_code, read.status_code) == (401, 401), refused_auth
        assert secret_value not in read.text and name not in listed.text

    listed, read = _filter_and_read(api_url, block_id, _basic(auth_string))
    assert (listed.status_code, read.status_code) == (200, 200)
    assert name in [document["name"] for document in listed.json()]
    assert read.json()["data"]["value"] == secret_value
    # Health probes stay open, as the demo's and the harness's start-up waits need.
    assert httpx.get(f"{api_url}/health", timeout=30).status_code == 200


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _process_alive(pid: int) -> bool:
    """Running and not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.fixture
def script_server(tmp_path):
    """Run ``scripts/prefect-server.sh`` with its own home and a free loopback port; stop it after."""
    home = tmp_path / "home"
    port = _free_loopback_port()
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "PREFECT_SERVER_API_AUTH_STRING")
    }
    environment.update(HOTSPARE_HOME=str(home), PREFECT_HOME=str(home / "prefect"), HOTSPARE_PREFECT_PORT=str(port))

    def run(action: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(SERVER_SCRIPT), action],
            env=environment,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    server = {"home": home, "port": port, "api_url": f"http://127.0.0.1:{port}/api", "run": run}
    yield server
    run("stop")
    pid_file = home / "run" / "prefect-server.pid"
    if pid_file.exists() and _process_alive(int(pid_file.read_text())):
        os.killpg(int(pid_file.read_text()), signal.SIGKILL)


def test_server_script_starts_prefect_behind_a_generated_auth_string(script_server):
    home, api_url = script_server["home"], script_server["api_url"]
    started = script_server["run"]("start")
    assert started.returncode == 0, started.stdout + started.stderr

    auth_file = home / "prefect-api-auth"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE(auth_file.stat().st_mode) == 0o600
    auth_string = auth_file.read_text().strip()
    assert re.fullmatch(r"hotspare:[A-Za-z0-9_-]{43}", auth_string)

    with httpx.Client(base_url=api_url, timeout=30) as anonymous:
        assert anonymous.post("/block_documents/filter", json={}).status_code == 401
        assert anonymous.get(f"/block_documents/{uuid.uuid4()}", params={"include_secrets": "true"}).status_code == 401
    with httpx.Client(base_url=api_url, auth=_basic(auth_string), timeout=30) as operator:
        assert operator.post("/block_documents/filter", json={}).status_code == 200
    # The UI asks for the string (login page) and talks to this port.
    ui_settings = httpx.get(f"http://127.0.0.1:{script_server['port']}/ui-settings", timeout=30).json()
    assert ui_settings["auth"] == "BASIC" and ui_settings["api_url"] == api_url

    # The string is in no argv, no log and no output.
    pid = int((home / "run" / "prefect-server.pid").read_text())
    group = [
        int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit() and _process_group(int(entry.name)) == pid
    ]
    assert pid in group
    for member in group:
        assert auth_string.encode() not in Path(f"/proc/{member}/cmdline").read_bytes()
    password = auth_string.split(":", 1)[1]
    assert password not in (home / "run" / "prefect-server.log").read_text()
    assert password not in started.stdout + started.stderr

    # Starting again checks the running server and keeps the string.
    again = script_server["run"]("start")
    assert again.returncode == 0, again.stdout + again.stderr
    assert auth_file.read_text().strip() == auth_string

    # A server that does not accept the string on file is refused, with what to do.
    auth_file.write_text("hotspare:another-string\n")
    mismatch = script_server["run"]("start")
    auth_file.write_text(auth_string + "\n")
    assert mismatch.returncode != 0
    assert "refuses the string" in mismatch.stderr and "another-string" not in mismatch.stderr

    stopped = script_server["run"]("stop")
    assert stopped.returncode == 0, stopped.stderr
    poll(lambda: not _process_alive(pid), 30, "the Prefect server process to end")
    assert not (home / "run" / "prefect-server.pid").exists()


def _process_group(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2])
    except (OSError, IndexError, ValueError):
        return None


def test_client_settings_carry_the_session_auth_string(prefect_api):
    """Processes the tests start inherit the string: a plain ``prefect`` CLI call is answered."""
    import sys

    from prefect.settings import PREFECT_API_URL

    prefect_command = [str(Path(sys.executable).parent / "prefect"), "block", "ls"]
    environment = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    listed = subprocess.run(prefect_command, env=environment, capture_output=True, text=True, timeout=120, check=False)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    without = {key: value for key, value in environment.items() if key != "PREFECT_API_AUTH_STRING"}
    refused = subprocess.run(prefect_command, env=without, capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode != 0
    assert "401" in refused.stdout + refused.stderr
