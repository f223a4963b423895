"""The adapters against the lab's real servers: OpenSSH hosts, BIND with TSIG, SMTP.

No mocks and no Prefect: endpoints come from the lab's fleet file, credentials from its
secrets file, and every claim of an adapter docstring is checked by what the server did
(files on the host, records as BIND answers them, mail in the maildir). Waiting is polling
with a deadline. Tests leave app1/app2 untouched and failed hosts healed.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dns.query
import dns.rcode
import dns.tsig
import dns.tsigkeyring
import dns.update
import pytest

from hotspare.adapters.dns import (
    AuthoritativeServer,
    TsigKey,
    compare_and_swap_address,
    read_addresses,
    read_ttl,
    set_ttl,
)
from hotspare.adapters.errors import (
    DnsPrerequisiteFailed,
    PermanentError,
    RemoteCommandError,
    TransientError,
    is_transient,
)
from hotspare.adapters.smtp import Relay, compose, send
from hotspare.adapters.ssh import Endpoint, Login, OutputTooLarge, SshConnection, command_line, secret_env_command
from hotspare.fleet.load import load_fleet
from hotspare.lab.keys import generate_ed25519
from hotspare.lab.topology import TTL

from lab_helpers import wait_for

pytestmark = pytest.mark.lab


# ----- helpers and fixtures ------------------------------------------------------------------


def finishes_within(seconds: float, function):
    """function()'s result or exception; fails the test (instead of hanging it) if it takes
    longer than ``seconds``."""
    outcome: dict = {}

    def target():
        try:
            outcome["result"] = function()
        except BaseException as error:  # re-raised in the test's thread
            outcome["error"] = error

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        pytest.fail(f"still running after {seconds:g} s: the call is not bounded by its timeout")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def unused_port() -> int:
    """A 127.0.0.1 TCP port with nothing listening (the kernel just handed it out)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def silent_listener():
    """(address, port) of a socket that completes TCP handshakes and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()


@pytest.fixture(scope="module")
def stored(lab_env) -> dict:
    """The lab's secrets file: client key, TSIG key, SMTP address."""
    return json.loads(Path(lab_env["secrets_file"]).read_text())


@pytest.fixture(scope="module")
def login(lab_env, stored) -> Login:
    return Login(lab_env["ssh"]["user"], stored["ssh"]["private_key"])


@pytest.fixture(scope="module")
def endpoints(lab_env) -> dict[str, Endpoint]:
    """Every lab server as the fleet file pins it."""
    fleet = load_fleet(lab_env["fleet_file"])
    return {server.name: Endpoint(server.name, server.address, server.ssh_port, server.host_key) for server in fleet.servers}


@pytest.fixture(scope="module")
def prod_east(endpoints, login):
    """One open connection to prod-east shared by the command tests."""
    with SshConnection(endpoints["prod-east"], login, connect_timeout=5) as connection:
        yield connection


def host_root(lab_env, host: str) -> Path:
    return Path(lab_env["hosts"][host]["root"])


# ----- SSH: trust and reachability -----------------------------------------------------------


def test_pinned_host_key_connects_and_runs_commands(prod_east, lab_env):
    result = prod_east.run(["hostname"])
    assert (result.exit_status, result.text) == (0, "prod-east\n")
    assert result.argv == ("hostname",)
    health = host_root(lab_env, "prod-east") / "srv/app1/data/health.txt"
    assert prod_east.run(["cat", "/srv/app1/data/health.txt"]).stdout == health.read_bytes()


def test_every_server_of_the_fleet_file_connects_with_its_pinned_key(endpoints, login):
    def hostname(name: str) -> str:
        with SshConnection(endpoints[name], login, connect_timeout=5) as connection:
            return connection.run(["hostname"]).text.strip()

    with ThreadPoolExecutor(max_workers=len(endpoints)) as pool:
        assert list(pool.map(hostname, endpoints)) == list(endpoints)


def test_another_hosts_key_is_refused_and_names_the_host(endpoints, login, lab_env):
    real = endpoints["prod-east"]
    impostor_pin = Endpoint(real.name, real.address, real.port, endpoints["mirror-west"].host_key)
    with pytest.raises(PermanentError) as refused:
        SshConnection(impostor_pin, login, connect_timeout=5).connect()
    message = str(refused.value)
    assert "prod-east" in message and lab_env["hosts"]["prod-east"]["address"] in message
    assert "host key" in message
    assert not is_transient(refused.value)


def test_a_changed_host_key_is_refused(endpoints, login):
    """The fleet pins a key the server no longer has (reinstall or impostor): BadHostKey."""
    real = endpoints["mirror-west"]
    _, public = generate_ed25519("reinstalled")
    changed = Endpoint(real.name, real.address, real.port, " ".join(public.split()[:2]))
    with pytest.raises(PermanentError, match=r"mirror-west \(.*\) presented a different host key"):
        SshConnection(changed, login, connect_timeout=5).connect()


def test_a_malformed_pinned_key_is_a_permanent_error(endpoints, login):
    real = endpoints["prod-west"]
    broken = Endpoint(real.name, real.address, real.port, "ssh-ed25519 not-base64!")
    with pytest.raises(PermanentError, match="host key of prod-west in the inventory is malformed"):
        SshConnection(broken, login, connect_timeout=5).connect()


def test_a_wrong_private_key_is_a_permanent_login_error(endpoints, lab_env):
    stranger, _ = generate_ed25519("stranger")
    with pytest.raises(PermanentError, match=r"prod-east \(.*\) refused the login of 'root'") as refused:
        SshConnection(endpoints["prod-east"], Login(lab_env["ssh"]["user"], stranger), connect_timeout=5).connect()
    assert not is_transient(refused.value)


def test_an_unreadable_private_key_is_a_permanent_error(endpoints, lab_env):
    with pytest.raises(PermanentError, match="not a readable unencrypted key"):
        SshConnection(endpoints["prod-east"], Login("root", "not a key"), connect_timeout=5).connect()


def test_a_closed_port_is_transient(endpoints, login):
    real = endpoints["prod-east"]
    closed = Endpoint(real.name, real.address, 2222, real.host_key)
    started = time.monotonic()
    with pytest.raises(TransientError, match=r"cannot reach prod-east \(.*:2222\)") as refused:
        SshConnection(closed, login, connect_timeout=5).connect()
    assert time.monotonic() - started < 2, "a refused connection must not wait for the timeout"
    assert is_transient(refused.value)


def test_a_failed_host_times_out_within_the_connect_timeout(lab, endpoints, login):
    assert lab.fail("mirror-east") == ["mirror-east"]
    try:
        started = time.monotonic()
        with pytest.raises(TransientError, match="mirror-east .* timed out after 2 s") as timed_out:
            SshConnection(endpoints["mirror-east"], login, connect_timeout=2).connect()
        elapsed = time.monotonic() - started
        assert 1.5 <= elapsed < 4, f"took {elapsed:.2f} s"
        assert is_transient(timed_out.value)
    finally:
        lab.heal("mirror-east")
    with SshConnection(endpoints["mirror-east"], login, connect_timeout=5) as healed:
        assert healed.run(["hostname"]).text == "mirror-east\n"


def test_a_host_failing_under_an_open_connection_is_transient(lab, endpoints, login):
    """After an outage the transport may still look active: the next command must fail as
    transient within the connection's timeouts, not hang or leak a paramiko error."""
    connection = SshConnection(endpoints["mirror-east"], login, connect_timeout=2)
    connection.connect()
    try:
        assert connection.run(["true"]).exit_status == 0
        lab.fail("mirror-east")
        try:
            started = time.monotonic()
            with pytest.raises(TransientError, match="mirror-east"):
                finishes_within(10, lambda: connection.run(["true"], timeout=2))
            assert time.monotonic() - started < 5
        finally:
            lab.heal("mirror-east")
        # once the host is back, the same SshConnection object works again
        assert finishes_within(10, lambda: connection.run(["hostname"], timeout=5)).text == "mirror-east\n"
    finally:
        connection.close()


# ----- SSH: commands ---------------------------------------------------------------------------


def test_arguments_reach_the_remote_program_verbatim_and_nothing_is_injected(prod_east, lab_env):
    token = uuid.uuid4().hex
    host_marker, machine_marker = f"/srv/pwned-{token}", f"/tmp/pwned-{token}"
    weird = [
        "two words",
        "  leading and trailing  ",
        "",
        "it's",
        'say "hi"',
        "back\\slash",
        f"$(touch {host_marker})",
        f"`touch {machine_marker}`",
        f"; touch {machine_marker}",
        f"&& touch {host_marker}",
        f"| touch {machine_marker}",
        f"> {machine_marker}",
        "line one\nline two",
        "tab\there",
        "*",
        "/etc/*",
        "?",
        "[a-z]*",
        "~",
        "$HOME",
        "${PATH}",
        "-n",
        "--",
        "%s %d",
        "naïve ✓",
        "'\"'\"'",
    ]
    result = prod_east.run(["printf", "%s\\n", *weird])
    assert result.text == "".join(argument + "\n" for argument in weird)
    # The checks below look where an injection would have landed: the host's own /srv and
    # /tmp are its folders on this machine (and the machine's /tmp is checked too).
    host_side = host_root(lab_env, "prod-east") / host_marker.lstrip("/")
    prod_east.run(["touch", host_marker + ".control"])  # proves host_side is the right place
    try:
        assert Path(str(host_side) + ".control").exists()
    finally:
        prod_east.run(["rm", "-f", host_marker + ".control"])
    assert not host_side.exists()
    assert not Path(machine_marker).exists()
    assert not (host_root(lab_env, "prod-east") / machine_marker.lstrip("/")).exists()
    assert prod_east.run(["test", "-e", host_marker], check=False).exit_status == 1


def test_stdin_is_delivered(prod_east):
    data = b"first line\nsecond line without newline \x00\xff binary"
    assert prod_east.run(["cat"], stdin=data).stdout == data
    assert prod_east.run(["wc", "-c"], stdin=b"").text.strip() == "0"  # stdin closed, no hang


def test_large_stdin_and_stdout_flow_at_the_same_time(prod_east):
    """More than both SSH windows (2 MiB each): sending stdin must not wait for the remote
    to stop writing, or `cat` deadlocks."""
    data = bytes(range(256)) * (6 * 4096)  # 6 MiB
    result = finishes_within(30, lambda: prod_east.run(["cat"], stdin=data, timeout=20))
    assert result.stdout == data


def test_secret_reaches_the_environment_but_not_argv(prod_east):
    secret = f"s3cret 'with' \"quotes\" $(and) {uuid.uuid4().hex}"
    wrapped = secret_env_command("SECRET", ["sh", "-c", 'printf "%s|" "$SECRET"; cat'])
    assert secret not in command_line(wrapped) and secret not in " ".join(wrapped)
    result = prod_east.run(wrapped, stdin=(secret + "\n").encode() + b"rest of the data")
    assert result.text == f"{secret}|rest of the data"
    # and the running program's own command line does not show it either
    snoop = secret_env_command("SECRET", ["sh", "-c", 'tr "\\000" " " < /proc/$$/cmdline'])
    seen = prod_east.run(snoop, stdin=(secret + "\n").encode()).text
    assert "/proc/$$/cmdline" in seen and secret not in seen


def test_non_zero_exit_raises_with_status_and_stderr_tail(prod_east):
    argv = ["sh", "-c", 'echo "lots of noise" >&2; echo "disk is full" >&2; exit 3']
    with pytest.raises(RemoteCommandError) as failed:
        prod_east.run(argv)
    error = failed.value
    assert (error.host, error.exit_status) == ("prod-east", 3)
    assert error.stderr_tail.endswith("disk is full\n")
    assert "exited 3" in str(error) and "disk is full" in str(error)
    assert not is_transient(error)


def test_stderr_tail_keeps_the_end_of_long_output(prod_east):
    argv = ["sh", "-c", 'i=0; while [ $i -lt 2000 ]; do echo "noise $i" >&2; i=$((i+1)); done; echo LAST >&2; exit 1']
    result = prod_east.run(argv, check=False)
    assert result.exit_status == 1
    assert len(result.stderr_tail) == 2000 and result.stderr_tail.endswith("noise 1999\nLAST\n")


def test_a_400_mb_answer_fails_at_the_cap_and_the_connection_stays_usable(prod_east):
    """A host answering 400 MB: the command fails with a sentence naming host, command and the
    16 MiB cap after about 16 MiB (not 400 MB) was read, within seconds; the shared connection
    still runs the next command. (Memory: bench/output_cap_bench.py.)"""
    argv = ["head", "-c", "400M", "/dev/zero"]
    with pytest.raises(OutputTooLarge) as failed:
        finishes_within(60, lambda: prod_east.run(argv, timeout=50))
    message = str(failed.value)
    assert message.startswith("on prod-east: `head -c 400M /dev/zero` wrote more than 16 MiB to stdout (the cap)")
    assert "closed the channel" in message and not is_transient(failed.value)
    assert prod_east.run(["echo", "still here"]).text == "still here\n"


def test_stderr_has_its_own_smaller_cap_and_both_are_configurable(prod_east):
    noisy = ["sh", "-c", "head -c 2M /dev/zero >&2; echo done"]
    with pytest.raises(OutputTooLarge, match=r"wrote more than 1 MiB to stderr \(the cap\)"):
        prod_east.run(noisy, timeout=30)
    assert prod_east.run(noisy, timeout=30, max_stderr=4 << 20).text == "done\n"
    with pytest.raises(OutputTooLarge, match="more than 100 bytes to stdout"):
        prod_east.run(["head", "-c", "101", "/dev/zero"], max_stdout=100)
    assert len(prod_east.run(["head", "-c", "100", "/dev/zero"], max_stdout=100).stdout) == 100


def test_check_false_returns_the_status(prod_east):
    result = prod_east.run(["sh", "-c", "echo partial; exit 7"], check=False)
    assert (result.exit_status, result.text) == (7, "partial\n")
    assert prod_east.run(["test", "-e", "/nonexistent"], check=False).exit_status == 1


def test_a_command_over_its_timeout_is_abandoned_as_transient(prod_east):
    started = time.monotonic()
    with pytest.raises(TransientError, match="`sleep 5` did not finish in time") as late:
        finishes_within(10, lambda: prod_east.run(["sleep", "5"], timeout=1))
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 4, f"took {elapsed:.2f} s"
    assert is_transient(late.value)
    assert prod_east.run(["true"]).exit_status == 0  # the connection stays usable


def test_an_empty_command_is_refused_before_anything_runs(prod_east):
    with pytest.raises(ValueError, match="empty command"):
        prod_east.run([])


def test_sftp_reads_the_hosts_own_files(prod_east, lab_env):
    token = uuid.uuid4().hex
    path = f"/srv/sftp-read-{token}.txt"
    prod_east.run(["sh", "-c", 'printf "%s" "$1" > "$2"', "sh", f"written over ssh {token}", path])
    try:
        sftp = prod_east.open_sftp()
        try:
            with sftp.open(path) as remote:
                assert remote.read() == f"written over ssh {token}".encode()
            with sftp.open("/srv/app1/data/health.txt") as remote:
                assert remote.read() == (host_root(lab_env, "prod-east") / "srv/app1/data/health.txt").read_bytes()
        finally:
            sftp.close()
    finally:
        prod_east.run(["rm", "-f", path])


# ----- DNS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(lab_env) -> AuthoritativeServer:
    return AuthoritativeServer(lab_env["zone"], lab_env["dns"]["address"], lab_env["dns"]["port"], timeout=2)


@pytest.fixture(scope="module")
def tsig(stored) -> TsigKey:
    return TsigKey(stored["tsig"]["key_name"], stored["tsig"]["algorithm"], stored["tsig"]["secret"])


def lab_update(server: AuthoritativeServer, key: TsigKey) -> dns.update.UpdateMessage:
    """A signed update built with dnspython alone (not the adapter), for setup and cleanup."""
    return dns.update.UpdateMessage(
        f"{server.zone}.",
        keyring=dns.tsigkeyring.from_text({key.name: key.secret}),
        keyname=key.name,
        keyalgorithm=dns.tsig.HMAC_SHA256,
    )


@pytest.fixture
def record(server, tsig):
    """A fresh test record ``adapter-test-<random>.lab.test A 192.0.2.10`` (TTL 60), deleted after."""
    name = f"adapter-test-{uuid.uuid4().hex[:12]}.{server.zone}"
    relative = name.removesuffix(f".{server.zone}")
    create = lab_update(server, tsig)
    create.absent(relative)
    create.add(relative, 60, "A", "192.0.2.10")
    assert dns.query.tcp(create, server.address, port=server.port, timeout=2).rcode() == dns.rcode.NOERROR
    yield name
    delete = lab_update(server, tsig)
    delete.delete(relative)
    assert dns.query.tcp(delete, server.address, port=server.port, timeout=2).rcode() == dns.rcode.NOERROR


def test_read_addresses_answers_what_the_zone_holds(server, lab_env):
    production = lab_env["services"]["app1"]["production"]
    assert read_addresses(server, "app1.lab.test") == [lab_env["hosts"][production]["address"]]
    assert read_addresses(server, "app1.lab.test.") == [lab_env["hosts"][production]["address"]]
    assert read_addresses(server, f"no-such-name-{uuid.uuid4().hex[:8]}.lab.test") == []
    assert read_ttl(server, "storage-vault.lab.test") == TTL


def test_compare_and_swap_moves_the_record(server, tsig, record):
    compare_and_swap_address(server, tsig, record, expected="192.0.2.10", new="192.0.2.20", ttl=30)
    assert read_addresses(server, record) == ["192.0.2.20"]
    assert read_ttl(server, record) == 30


def test_compare_and_swap_with_a_stale_expectation_changes_nothing(server, tsig, record):
    with pytest.raises(DnsPrerequisiteFailed, match="NXRRSET") as stale:
        compare_and_swap_address(server, tsig, record, expected="192.0.2.99", new="192.0.2.20", ttl=30)
    assert not is_transient(stale.value)
    assert read_addresses(server, record) == ["192.0.2.10"]
    assert read_ttl(server, record) == 60


def test_of_two_racing_swaps_exactly_one_wins(server, tsig, record):
    barrier = threading.Barrier(2)

    def swap(new: str) -> str:
        barrier.wait()
        try:
            compare_and_swap_address(server, tsig, record, expected="192.0.2.10", new=new, ttl=60)
            return new
        except DnsPrerequisiteFailed:
            return "lost"

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = sorted(pool.map(swap, ["192.0.2.21", "192.0.2.22"]))
    assert outcomes.count("lost") == 1, outcomes
    winner = next(outcome for outcome in outcomes if outcome != "lost")
    assert read_addresses(server, record) == [winner]


def test_a_wrong_tsig_secret_is_badsig_and_changes_nothing(server, tsig, record):
    wrong = TsigKey(tsig.name, tsig.algorithm, "d3Jvbmcgc2VjcmV0IHdyb25nIHNlY3JldCB3cm9uZyE=")
    with pytest.raises(PermanentError, match="BADSIG") as rejected:
        compare_and_swap_address(server, wrong, record, expected="192.0.2.10", new="192.0.2.20", ttl=60)
    assert tsig.secret not in str(rejected.value) and wrong.secret not in str(rejected.value)
    assert not isinstance(rejected.value, DnsPrerequisiteFailed)
    assert read_addresses(server, record) == ["192.0.2.10"]


def test_an_unknown_tsig_key_is_badkey_and_changes_nothing(server, tsig, record):
    unknown = TsigKey("no-such-key", tsig.algorithm, tsig.secret)
    with pytest.raises(PermanentError, match="BADKEY.*nothing was changed"):
        compare_and_swap_address(server, unknown, record, expected="192.0.2.10", new="192.0.2.20", ttl=60)
    wrong_algorithm = TsigKey(tsig.name, "hmac-sha512", tsig.secret)
    with pytest.raises(PermanentError, match="BADKEY"):
        set_ttl(server, wrong_algorithm, record, "192.0.2.10", 600)
    assert read_addresses(server, record) == ["192.0.2.10"]
    assert read_ttl(server, record) == 60


def test_bad_key_material_is_refused_before_sending(server, tsig, record):
    with pytest.raises(PermanentError, match="not supported"):
        set_ttl(server, TsigKey(tsig.name, "hmac-md4", tsig.secret), record, "192.0.2.10", 600)
    with pytest.raises(PermanentError, match="not valid base64"):
        set_ttl(server, TsigKey(tsig.name, tsig.algorithm, "%%% not base64 %%%"), record, "192.0.2.10", 600)


def test_set_ttl_rewrites_only_the_ttl(server, tsig, record):
    set_ttl(server, tsig, record, "192.0.2.10", 300)
    assert read_ttl(server, record) == 300
    assert read_addresses(server, record) == ["192.0.2.10"]
    with pytest.raises(DnsPrerequisiteFailed):
        set_ttl(server, tsig, record, "192.0.2.99", 5)
    assert read_ttl(server, record) == 300


def test_a_dns_port_with_nothing_listening_is_transient(server, tsig):
    nowhere = AuthoritativeServer(server.zone, "127.0.0.1", unused_port(), timeout=2)
    with pytest.raises(TransientError, match="cannot reach DNS server") as unreachable:
        read_addresses(nowhere, "app1.lab.test")
    assert is_transient(unreachable.value)
    with pytest.raises(TransientError, match="cannot reach DNS server"):
        compare_and_swap_address(nowhere, tsig, "app1.lab.test", "192.0.2.1", "192.0.2.2", 60)


def test_a_dns_server_that_never_answers_times_out_as_transient(server, tsig, silent_listener):
    address, port = silent_listener
    silent = AuthoritativeServer(server.zone, address, port, timeout=1)
    started = time.monotonic()
    with pytest.raises(TransientError, match="did not answer within 1 s"):
        read_addresses(silent, "app1.lab.test")
    with pytest.raises(TransientError, match="did not answer the update"):
        compare_and_swap_address(silent, tsig, "app1.lab.test", "192.0.2.1", "192.0.2.2", 60)
    assert time.monotonic() - started < 4


# ----- SMTP --------------------------------------------------------------------------------------


def test_compose_builds_the_headers_and_parts():
    message = compose(
        "hotspare@lab.test",
        ["dana@ops.lab.test", "lee@ops.lab.test"],
        "Failover of app1: done",
        "app1 now runs on mirror-west.\n",
    )
    assert message["From"] == "hotspare@lab.test"
    assert message["To"] == "dana@ops.lab.test, lee@ops.lab.test"
    assert message["Subject"] == "Failover of app1: done"
    assert message["Message-ID"].endswith("@lab.test>")
    assert message.get_content_type() == "text/plain"
    assert message.get_content() == "app1 now runs on mirror-west.\n"
    assert (
        compose("a@lab.test", ["b@lab.test"], "s", "b")["Message-ID"]
        != compose("a@lab.test", ["b@lab.test"], "s", "b")["Message-ID"]
    )

    rich = compose("hotspare@lab.test", ["dana@ops.lab.test"], "Report", "plain", html="<p>rich</p>")
    assert rich.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in rich.iter_parts()] == ["text/plain", "text/html"]
    with pytest.raises(ValueError, match="at least one recipient"):
        compose("hotspare@lab.test", [], "nobody", "body")


def test_send_delivers_to_the_maildir(lab_env):
    subject = f"adapter test {uuid.uuid4().hex} ✓"
    message = compose("hotspare@lab.test", ["dana@ops.lab.test"], subject, "body of the adapter test\n")
    send(Relay(lab_env["smtp"]["address"], lab_env["smtp"]["port"], timeout=5), message)
    new = Path(lab_env["smtp"]["maildir"]) / "new"

    def delivered():
        import email
        from email.policy import default

        for path in new.glob("*"):
            stored_message = email.message_from_bytes(path.read_bytes(), policy=default)
            if stored_message["Subject"] == subject:
                return stored_message
        return None

    stored_message = wait_for("the message in the maildir", delivered)
    assert stored_message["Message-ID"] == message["Message-ID"]
    assert stored_message["To"] == "dana@ops.lab.test"
    assert stored_message.get_content() == "body of the adapter test\n"


def test_send_to_a_closed_port_is_transient():
    message = compose("hotspare@lab.test", ["dana@ops.lab.test"], "never sent", "body")
    with pytest.raises(TransientError, match="unreachable") as unreachable:
        send(Relay("127.0.0.1", unused_port(), timeout=2), message)
    assert is_transient(unreachable.value)


def test_send_to_a_silent_relay_times_out_as_transient(silent_listener):
    address, port = silent_listener
    message = compose("hotspare@lab.test", ["dana@ops.lab.test"], "never sent", "body")
    started = time.monotonic()
    with pytest.raises(TransientError, match=f"SMTP relay {address}:{port}"):
        send(Relay(address, port, timeout=1), message)
    assert time.monotonic() - started < 3


def test_a_refused_channel_leaves_the_shared_connection_to_its_other_borrowers(fleet):
    """The pool shares one connection per server among a run's threads: one command's channel
    refused on a connection that is up must not end the others' commands; any other transient
    failure retires and closes the connection (a dead link must not hold anyone)."""
    from hotspare import access
    from hotspare.adapters.errors import ChannelRefused

    with access.connect(fleet, "prod-east") as first:
        with pytest.raises(ChannelRefused):
            with access.connect(fleet, "prod-east") as second:
                assert second._connection is first._connection  # one connection, two borrowers
                raise ChannelRefused("prod-east refused a new SSH channel")
        assert first.run(["echo", "still here"]).text == "still here\n"
        with pytest.raises(TransientError):
            with access.connect(fleet, "prod-east") as third:
                assert third._connection is first._connection
                raise TransientError("the link looks dead")
        assert not first._connection.is_open()  # closed for everyone: nobody waits on a dead link
    with access.connect(fleet, "prod-east") as fresh:
        assert fresh.run(["true"]).exit_status == 0
