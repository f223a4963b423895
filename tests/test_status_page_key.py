"""The status page key in a Prefect block, against the session's real Prefect API: made once and
the same for every load and every process (two processes making it at once end with one key),
an old ``status-page.key`` file moved into the block and removed, a malformed one refused with
nothing changed, and the key's value in no log line and no error.

Each test uses a block name of its own and a temporary folder as the home where an old key
file may lie, so no test meets another's key (the status page tests use the fleet's block)."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from lab_helpers import wait_for

ROOT = Path(__file__).resolve().parents[1]


def block_name() -> str:
    return f"status-page-key-test-{uuid.uuid4().hex[:12]}"


def stored_key(name: str) -> str | None:
    """The hex digits the API holds in block ``name``, None when there is none."""
    from prefect.exceptions import ObjectNotFound

    from blocks.credentials import StatusPageKey

    try:
        return StatusPageKey.load(name).key.get_secret_value()
    except ValueError as error:
        assert isinstance(error.__cause__, ObjectNotFound), error
        return None


def old_key_file(home: Path, text: str) -> Path:
    path = home / "status-page.key"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    return path


@pytest.fixture
def fresh_cache():
    from tasks.status_page_key import forget_status_page_key

    forget_status_page_key()
    yield
    forget_status_page_key()


def test_the_key_is_made_once_and_the_same_for_every_load(prefect_api, tmp_path, caplog, fresh_cache):
    from tasks.status_page_key import forget_status_page_key, key_from_block

    name = block_name()
    assert stored_key(name) is None
    with caplog.at_level(logging.DEBUG):
        first = key_from_block(name, tmp_path)
        forget_status_page_key()  # the second load asks the API again
        second = key_from_block(name, tmp_path)
    assert len(first) == 32 and first == second
    assert stored_key(name) == first.hex()
    assert [r.getMessage() for r in caplog.records if "a new key is in it" in r.getMessage()] == [
        f"status page key: Prefect block {name!r} was missing; a new key is in it (one key for the whole fleet)"
    ]
    assert first.hex() not in caplog.text and first.hex().upper() not in caplog.text
    assert not (tmp_path / "status-page.key").exists()  # no file is made any more


def test_the_fleet_names_the_block_and_pages_keep_their_addresses(fleet, fresh_cache):
    from hotspare.planning.subscriptions import page_token
    from tasks.subscriptions import customer_pages, status_page_key

    key = status_page_key(fleet)
    assert stored_key(fleet.customer_notices.status_page_key_block) == key.hex()
    assert [audience.token for audience in customer_pages(fleet)] == [
        page_token(key, customer.name) for customer in fleet.customer_notices.customers
    ]


RACER = """
import logging, sys, time
from pathlib import Path
logging.basicConfig(level=logging.INFO, format="%(message)s")
from tasks.status_page_key import key_from_block
import blocks.credentials, prefect.client.orchestration  # imported before the start, so both begin together
name, home, start = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
home.mkdir()
(home / "ready").touch()
deadline = time.monotonic() + 120
while not start.exists():
    if time.monotonic() > deadline:
        sys.exit("no start signal")
    time.sleep(0.005)
import hashlib
print(hashlib.sha256(key_from_block(name, home)).hexdigest())
"""


@pytest.mark.parametrize("old_files", [False, True], ids=["new key", "two hosts' old files"])
def test_processes_making_the_key_at_once_end_with_one_key(prefect_api, tmp_path, old_files):
    """Three processes (each a host with its own home) ask for a missing key at the same moment:
    each saves without overwriting, the API keeps one save, and all three use that key. With an
    old key file on each host, the one that won is the block's and the others' files stay."""
    from prefect.settings import PREFECT_API_URL

    name = block_name()
    start = tmp_path / "start"
    homes = [tmp_path / f"host{number}" for number in range(3)]
    old_keys = [os.urandom(32).hex() for _home in homes]
    environment = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(ROOT)}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, name, str(home), str(start)],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for home in homes
    ]
    try:
        if old_files:
            for home, key in zip(homes, old_keys):
                wait_for(f"{home} made", home.exists, 120)
                old_key_file(home, key + "\n")
        wait_for("every process ready", lambda: all((home / "ready").exists() for home in homes), 120)
        start.touch()
        outputs = [racer.communicate(timeout=120) for racer in racers]
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()  # a process this test started, by its handle
                racer.wait(timeout=10)
    assert [racer.returncode for racer in racers] == [0, 0, 0], [error[-2000:] for _out, error in outputs]
    stored = stored_key(name)
    assert stored is not None
    assert {out.strip() for out, _error in outputs} == {hashlib.sha256(bytes.fromhex(stored)).hexdigest()}
    made = [error.count("was missing; a new key is in it") for _out, error in outputs]
    moved = [error.count("into Prefect block") for _out, error in outputs]
    assert sum(moved if old_files else made) == 1 and sum(made if old_files else moved) == 0, outputs
    if old_files:
        assert stored in old_keys  # one host's old key became the fleet's: its pages keep their addresses
        winner = old_keys.index(stored)
        assert not (homes[winner] / "status-page.key").exists()
        assert all((home / "status-page.key").exists() for number, home in enumerate(homes) if number != winner)
    for _out, error in outputs:
        assert stored not in error and all(key not in error for key in old_keys)


def test_a_name_another_process_saved_first_is_loaded_not_overwritten(prefect_api):
    from blocks.credentials import StatusPageKey
    from tasks.status_page_key import _save_first

    name = block_name()
    theirs, ours = os.urandom(32).hex(), os.urandom(32).hex()
    StatusPageKey(key=theirs).save(name)
    assert _save_first(name, ours) == theirs
    assert stored_key(name) == theirs


def test_an_old_key_file_moves_into_the_block_and_is_removed(prefect_api, tmp_path, caplog, fresh_cache):
    from hotspare.planning.subscriptions import page_token
    from tasks.status_page_key import key_from_block

    name = block_name()
    old = os.urandom(32)
    path = old_key_file(tmp_path, old.hex().upper() + "\n")  # either case is the same 32 bytes
    with caplog.at_level(logging.DEBUG):
        key = key_from_block(name, tmp_path)
    assert key == old and page_token(key, "acme") == page_token(old, "acme")
    assert stored_key(name) == old.hex()
    assert not path.exists()
    assert [r.getMessage() for r in caplog.records if "moved from" in r.getMessage()] == [
        f"status page key: moved from {path} into Prefect block {name!r} and removed the file; customer page "
        "addresses stay the same (back the block up, not the file)"
    ]
    assert old.hex() not in caplog.text.lower()


@pytest.mark.parametrize("text", ["not a key\n", "ab" * 31 + "\n", "", "zz" * 32])
def test_a_malformed_old_key_file_is_refused_with_nothing_changed(prefect_api, tmp_path, fresh_cache, text):
    from hotspare.errors import MissingConfiguration
    from tasks.status_page_key import key_from_block

    name = block_name()
    path = old_key_file(tmp_path, text)
    with pytest.raises(MissingConfiguration) as refused:
        key_from_block(name, tmp_path)
    message = str(refused.value)
    assert message == (
        f"{path} does not hold a status page key (64 hex digits): restore it from a backup, or remove it to make "
        "a new key (every customer page address changes)"
    )
    assert "\n" not in message and (not text.strip() or text.strip() not in message)
    assert path.read_text() == text and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stored_key(name) is None


def test_an_old_file_beside_the_block_goes_when_it_holds_the_same_key_and_stays_otherwise(
    prefect_api, tmp_path, caplog, fresh_cache
):
    """The first state is what a process killed between saving the block and removing the file
    leaves: the next load finishes the move."""
    from blocks.credentials import StatusPageKey
    from tasks.status_page_key import forget_status_page_key, key_from_block

    name = block_name()
    fleet_key = os.urandom(32).hex()
    StatusPageKey(key=fleet_key).save(name)
    same = old_key_file(tmp_path, fleet_key + "\n")
    assert key_from_block(name, tmp_path).hex() == fleet_key
    assert not same.exists()

    forget_status_page_key()
    other = os.urandom(32).hex()
    different = old_key_file(tmp_path, other + "\n")
    with caplog.at_level(logging.WARNING):
        assert key_from_block(name, tmp_path).hex() == fleet_key
    assert different.read_text() == other + "\n"  # another host's old addresses: kept, not used
    assert f"{different} does not hold Prefect block {name!r}'s key and is not used" in caplog.text
    assert other not in caplog.text and fleet_key not in caplog.text


def test_a_block_holding_no_key_is_refused_without_showing_its_value(prefect_api, tmp_path, fresh_cache):
    from pydantic import SecretStr

    from blocks.credentials import StatusPageKey
    from hotspare.errors import MissingConfiguration
    from tasks.status_page_key import key_from_block

    name = block_name()
    value = "0123456789abcdef" * 3 + "not hex!"
    StatusPageKey.model_construct(key=SecretStr(value)).save(name)  # as a hand edit through the API could
    with pytest.raises(MissingConfiguration) as refused:
        key_from_block(name, tmp_path)
    assert str(refused.value).startswith(f"Prefect block {name!r} (StatusPageKey) does not hold a status page key")
    assert value[:16] not in str(refused.value) and refused.value.__cause__ is None


def runbook_command(starting: str) -> str:
    """The shell command of docs/runbooks.md ("The status page key") that starts with ``starting``."""
    import re

    text = (ROOT / "docs" / "runbooks.md").read_text()
    section = text[text.index("**The status page key**") :]
    section = section[: section.index("\n\n", section.index("**Rotate it**"))]
    [command] = [found for found in re.findall(r"`([^`]+)`", section) if found.startswith(starting)]
    return command


def test_rotation_backup_and_restore_as_the_runbook_says(prefect_api, tmp_path, fresh_cache, monkeypatch):
    """Back the key up, rotate it (delete the block: the next use makes a new key, which a
    process's cache hides for at most CACHE_SECONDS), then restore the backup: the old key again."""
    from prefect.settings import PREFECT_API_URL

    from tasks import status_page_key
    from tasks.status_page_key import forget_status_page_key, key_from_block

    name = block_name()
    environment = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(ROOT)}

    def run(command: str) -> str:
        command = command.replace('"status-page-key"', f'"{name}"').replace("/status-page-key", f"/{name}")
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=tmp_path,
            input="y\n",  # prefect block delete asks
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    before = key_from_block(name, tmp_path)
    output = run(runbook_command("umask 077; python -c"))
    backup = tmp_path / "status-page-key.backup"
    assert backup.read_text() == before.hex() + "\n" and stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert before.hex() not in output

    run(runbook_command("prefect block delete"))
    assert stored_key(name) is None
    assert key_from_block(name, tmp_path) == before  # cached: at most CACHE_SECONDS of the old key
    monkeypatch.setattr(status_page_key, "CACHE_SECONDS", 0.0)
    rotated = key_from_block(name, tmp_path)
    assert rotated != before and stored_key(name) == rotated.hex()

    output = run(runbook_command("python -c 'import sys"))
    assert before.hex() not in output
    forget_status_page_key()
    assert key_from_block(name, tmp_path) == before and stored_key(name) == before.hex()


def test_the_form_answers_503_in_one_log_line_when_the_key_cannot_be_had(fleet, caplog, fresh_cache):
    """A fleet whose key block holds no key: the public form says "try again later" (no 500, no
    traceback in the log, no block value anywhere), and the one log line names the block."""
    import urllib.error
    import urllib.parse
    import urllib.request

    from pydantic import SecretStr

    from blocks.credentials import StatusPageKey
    from hotspare.subscription_webhook import serve
    from tasks.subscriptions import customer_pages

    pages = customer_pages(fleet)  # under the fleet's own key
    name = block_name()
    value = "fedcba9876543210" * 3 + "garbage!"
    StatusPageKey.model_construct(key=SecretStr(value)).save(name)
    broken = fleet.model_copy(
        update={"customer_notices": fleet.customer_notices.model_copy(update={"status_page_key_block": name})}
    )
    server, thread = serve(broken, "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/subscribe"
        data = urllib.parse.urlencode({"page": pages[0].token, "email": "reader@example.lab.test"}).encode()
        with caplog.at_level(logging.INFO), pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=30)
        assert answer.value.code == 503 and "try again later" in answer.value.read().decode()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert not thread.is_alive()
    [line] = [record for record in caplog.records if record.getMessage().startswith("subscription request /subscribe failed")]
    assert f"Prefect block {name!r} (StatusPageKey) does not hold a status page key" in line.getMessage()
    assert line.exc_info is None and "Traceback" not in caplog.text and value[:16] not in caplog.text
