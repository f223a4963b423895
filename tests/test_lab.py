"""The built-in lab against its promises: real sshd, BIND, SMTP and apps; no mocks.

Most tests use the session lab from conftest (`lab`: the Lab, `lab_env`: its env dict, slot
1) and leave it as they found it. Tests that crash or squat a lab use their own, on a slot
nobody uses (`free_slot`).
"""

from __future__ import annotations

import json
import os
import signal
import smtplib
import socket
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path

import pytest
import yaml

from lab_helpers import free_slot, host_path, ssh, wait_for

pytestmark = pytest.mark.lab

SERVICE_HOSTS = [
    ("app1", "prod-east"),
    ("app1", "mirror-west"),
    ("app2", "prod-west"),
    ("app2", "mirror-east"),
    ("app3", "prod-east"),
    ("app3", "mirror-west"),
]


def parallel(function, items):
    """Results of function(item) for every item, run concurrently (hosts are independent)."""
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        return list(pool.map(function, items))


def curl(url: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["curl", "--noproxy", "*", "-sS", "-f", "--max-time", "5", url], capture_output=True, text=True, check=False
    )


def dig(lab_env: dict, name: str) -> str:
    result = subprocess.run(
        ["dig", f"@{lab_env['dns']['address']}", "-p", str(lab_env["dns"]["port"]), name, "A", "+short", "+time=2", "+tries=1"],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def tcp_times_out(address: str, port: int = 22, timeout: float = 1.5) -> bool:
    """True when a TCP connect times out (a silent host), False if it connects."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return False
    except TimeoutError:
        return True


# ----- hosts ---------------------------------------------------------------------------------


def test_plain_ssh_reaches_every_host_with_pinned_keys(lab_env):
    results = parallel(lambda host: (host, ssh(lab_env, host, "hostname")), list(lab_env["hosts"]))
    for host, result in results:
        assert result.returncode == 0, f"{host}: {result.stderr}"
        assert result.stdout.strip() == host


def test_each_host_sees_its_own_srv(lab_env):
    marker = f"/srv/isolation-{uuid.uuid4().hex}"
    written = ssh(lab_env, "prod-east", "touch", marker)
    assert written.returncode == 0, written.stderr
    try:
        assert (Path(lab_env["hosts"]["prod-east"]["root"]) / marker.lstrip("/")).exists()
        assert not (Path(lab_env["hosts"]["mirror-west"]["root"]) / marker.lstrip("/")).exists()
        assert ssh(lab_env, "mirror-west", "test", "-e", marker).returncode == 1
        assert not Path(marker).exists()  # the machine's own /srv is untouched
    finally:
        ssh(lab_env, "prod-east", "rm", "-f", marker)


def test_app_users_exist_on_their_own_production_only(lab_env):
    production = ssh(lab_env, "prod-east", "getent", "passwd", "app1-web")
    assert production.returncode == 0, production.stderr
    assert production.stdout.split(":")[2] == "2001"
    shadow = ssh(lab_env, "prod-east", "getent", "shadow", "app1-web").stdout.split(":")
    assert shadow[1].startswith("$"), "app users get a real password hash"
    assert ssh(lab_env, "prod-west", "id", "-u", "app2-batch").stdout.strip() == "3002"
    # each host has its own account files: app1's users are unknown on app2's production
    assert ssh(lab_env, "prod-west", "getent", "passwd", "app1-web").returncode == 2


def test_app3_shares_app1s_hosts_with_its_own_users_port_and_password(lab_env):
    """app3 runs beside app1 on prod-east (mirror mirror-west, storage storage-vault): both
    services' accounts live in one /etc/passwd, each app answers on its own port."""
    app1, app3 = lab_env["services"]["app1"], lab_env["services"]["app3"]
    assert (app3["production"], app3["mirror"]) == (app1["production"], app1["mirror"]) == ("prod-east", "mirror-west")
    assert app3["app_port"] != app1["app_port"]
    for user, uid in (("app1-web", "2001"), ("app3-web", "4001"), ("app3-batch", "4002")):
        assert ssh(lab_env, "prod-east", "id", "-u", user).stdout.strip() == uid
    assert ssh(lab_env, "prod-east", "getent", "shadow", "app3-web").stdout.split(":")[1].startswith("$")
    for host in ("prod-east", "mirror-west"):
        address = lab_env["hosts"][host]["address"]
        for service in ("app1", "app3"):
            answer = curl(f"http://{address}:{lab_env['services'][service]['app_port']}/health.txt")
            assert answer.stdout == f"ok {service}\n", (host, service, answer.stderr)
    fleet = yaml.safe_load(Path(lab_env["fleet_file"]).read_text())
    entry = next(service for service in fleet["services"] if service["name"] == "app3")
    assert entry["health_url"] == f"http://app3.lab.test:{app3['app_port']}/health.txt"
    assert (entry["storage"], entry["accounts"]["uid_min"], entry["accounts"]["uid_max"]) == ("storage-vault", 4000, 4999)
    passwords = json.loads(Path(lab_env["secrets_file"]).read_text())["restic"]["passwords"]
    assert entry["backup"]["password_block"] == "lab-restic-app3" and passwords["app3"] not in (
        passwords["app1"],
        passwords["app2"],
    )


def test_service_files_are_in_place(lab_env):
    for service, host in SERVICE_HOSTS:
        root = Path(lab_env["hosts"][host]["root"])
        assert os.access(root / f"srv/{service}/app/ctl", os.X_OK)
        assert os.access(root / f"srv/{service}/app/dump-db", os.X_OK)
        assert (root / f"srv/{service}/accounts").read_text().strip()
        assert (root / f"etc/{service}/{service}.conf").exists()
        assert (root / f"srv/{service}/data/health.txt").exists()
    assert (Path(lab_env["hosts"]["prod-east"]["root"]) / "srv/app1/data/index.html").exists()


def test_lab_traffic_never_takes_the_default_route(lab, lab_env):
    address = lab_env["hosts"]["prod-east"]["address"]
    via = subprocess.run(["ip", "route", "get", address], capture_output=True, text=True)
    assert f"dev hs{lab.slot}br" in via.stdout
    unused_lab_address = f"10.211.{70 + free_slot()}.11"  # e.g. a lab that is down
    assert (
        subprocess.run(["ip", "route", "get", unused_lab_address], capture_output=True, text=True).returncode != 0
    )  # blackholed
    inside = subprocess.run(["ip", "-n", lab_env["hosts"]["prod-east"]["netns"], "route"], capture_output=True, text=True).stdout
    assert "default" not in inside


# ----- DNS, apps, mail -----------------------------------------------------------------------


def test_dns_answers_service_and_host_names(lab_env):
    hosts = lab_env["hosts"]
    for service in lab_env["services"].values():
        assert dig(lab_env, service["dns_name"]) == hosts[service["production"]]["address"]
    assert dig(lab_env, "storage-vault.lab.test") == hosts["storage-vault"]["address"]


def test_users_resolver_answers_the_lab_zone_from_its_cache_and_refuses_the_rest(lab_env):
    """unbound in front of BIND: users get the service's address; a change at BIND reaches them
    only when the cached answer's TTL runs out; names outside the lab are refused locally (the
    resolver never asks anyone else: its queries leave from 127.0.0.1)."""
    import dns.message
    import dns.query
    import dns.rcode

    from hotspare.adapters import dns as dns_adapter
    from hotspare.lab.topology import TTL

    resolver = lab_env["resolver"]
    assert resolver["address"] == "127.0.0.1" and resolver["software"] == "unbound"

    def ask(name: str):
        return dns.query.udp(dns.message.make_query(name, "A"), resolver["address"], port=resolver["port"], timeout=2)

    name = "standby-west.lab.test"
    first = ask(name)
    assert first.rcode() == dns.rcode.NOERROR
    assert [item.address for item in first.answer[0]] == [lab_env["hosts"]["standby-west"]["address"]]
    assert first.answer[0].ttl <= TTL
    server = dns_adapter.AuthoritativeServer(lab_env["zone"], lab_env["dns"]["address"], lab_env["dns"]["port"])
    stored = json.loads(Path(lab_env["secrets_file"]).read_text())["tsig"]
    key = dns_adapter.TsigKey(stored["key_name"], stored["algorithm"], stored["secret"])
    real, moved = (
        lab_env["hosts"]["standby-west"]["address"],
        lab_env["hosts"]["standby-west"]["address"].rsplit(".", 1)[0] + ".99",
    )
    dns_adapter.compare_and_swap_address(server, key, name, real, moved, TTL)
    try:
        assert dns_adapter.read_addresses(server, name) == [moved]  # the authoritative answer changed ...
        cached = ask(name)  # ... users still get the cached one, its TTL counting down
        assert [item.address for item in cached.answer[0]] == [real] and cached.answer[0].ttl <= first.answer[0].ttl
    finally:
        dns_adapter.compare_and_swap_address(server, key, name, moved, real, TTL)
    outside = ask("example.com")
    assert outside.rcode() == dns.rcode.REFUSED and not outside.answer


def test_apps_answer_on_production_and_mirror(lab_env):
    for service, host in SERVICE_HOSTS:
        address = lab_env["hosts"][host]["address"]
        result = curl(f"http://{address}:{lab_env['services'][service]['app_port']}/health.txt")
        assert result.returncode == 0, f"{service} on {host}: {result.stderr}"
        assert result.stdout.startswith("ok")


def test_ctl_start_is_idempotent_and_stop_uses_the_pid(lab_env):
    ctl = "/srv/app1/app/ctl"
    url = f"http://{lab_env['hosts']['mirror-west']['address']}:8080/health.txt"
    again = ssh(lab_env, "mirror-west", ctl, "start")
    assert again.returncode == 0 and "already running" in again.stdout
    try:
        assert ssh(lab_env, "mirror-west", ctl, "stop").returncode == 0
        assert ssh(lab_env, "mirror-west", ctl, "status").returncode == 3
        assert curl(url).returncode != 0
        assert ssh(lab_env, "mirror-west", ctl, "stop").returncode == 0  # stopped is fine
    finally:
        started = ssh(lab_env, "mirror-west", ctl, "start")
    assert started.returncode == 0, started.stderr
    assert curl(url).returncode == 0


def test_ctl_stops_its_own_hosts_server_whatever_its_pid_file_names(lab_env):
    """Lab hosts share one PID space, PID numbers wrap within a test run, and app1's server has the
    same command line on prod-east and mirror-west: a stale pid file on prod-east naming
    mirror-west's server must not make prod-east's ctl stop mirror-west's server and leave its own
    serving (it once did, and a reprotect then saw two productions)."""
    ctl = "/srv/app1/app/ctl"
    port = lab_env["services"]["app1"]["app_port"]
    url = {host: f"http://{lab_env['hosts'][host]['address']}:{port}/health.txt" for host in ("prod-east", "mirror-west")}
    mirror_pid = int(host_path(lab_env, "mirror-west", "/srv/app1/run/http.pid").read_text())
    host_path(lab_env, "prod-east", "/srv/app1/run/http.pid").write_text(f"{mirror_pid}\n")
    try:
        stopped = ssh(lab_env, "prod-east", ctl, "stop")
        assert stopped.returncode == 0 and f"pid {mirror_pid})" not in stopped.stdout, stopped.stdout
        assert curl(url["prod-east"]).returncode != 0, "prod-east's own server stopped"
        assert curl(url["mirror-west"]).returncode == 0, "mirror-west's server untouched"
    finally:
        started = ssh(lab_env, "prod-east", ctl, "start")
    assert started.returncode == 0, started.stderr
    assert curl(url["prod-east"]).returncode == 0


def test_dump_db_hook_writes_into_the_data_folder(lab_env):
    result = ssh(lab_env, "prod-west", "/srv/app2/app/dump-db")
    assert result.returncode == 0, result.stderr
    dump = Path(lab_env["hosts"]["prod-west"]["root"]) / "srv/app2/data/db-dump.sql"
    try:
        assert "INSERT INTO accounts" in dump.read_text()
    finally:
        dump.unlink()


def test_smtp_stores_mail_in_the_maildir(lab_env):
    subject = f"lab test {uuid.uuid4().hex}"
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "hotspare@lab.test", "dana@ops.lab.test", subject
    message.set_content("hello")
    with smtplib.SMTP(lab_env["smtp"]["address"], lab_env["smtp"]["port"], timeout=5) as client:
        client.send_message(message)
    new = Path(lab_env["smtp"]["maildir"]) / "new"
    wait_for("mail in the maildir", lambda: any(subject in path.read_text(errors="replace") for path in new.glob("*")))


# ----- the fleet file ------------------------------------------------------------------------


def test_fleet_file_describes_the_lab(lab_env):
    fleet = yaml.safe_load(Path(lab_env["fleet_file"]).read_text())
    servers = {server["name"]: server for server in fleet["servers"]}
    assert set(servers) == set(lab_env["hosts"])
    pinned = dict(line.split(" ", 1) for line in Path(lab_env["ssh"]["known_hosts"]).read_text().splitlines())
    for name, host in lab_env["hosts"].items():
        assert servers[name]["address"] == host["address"]
        assert servers[name]["host_key"] == pinned[host["address"]].strip()
        assert servers[name]["role"] == host["role"]
        assert all(value > 0 for value in servers[name]["hardware"].values())
    assert fleet["zones"][0]["port"] == lab_env["dns"]["port"]
    services = {service["name"]: service for service in fleet["services"]}
    assert services["app1"]["production"] == "prod-east" and services["app1"]["mirror"] == "mirror-west"
    assert services["app2"]["production"] == "prod-west" and services["app2"]["mirror"] == "mirror-east"
    assert services["app1"]["accounts"] == {"uid_min": 2000, "uid_max": 2999, "files": ["/srv/app1/accounts"]}
    assert services["app2"]["pre_sync"] == [["/srv/app2/app/dump-db"]]


def test_fleet_file_passes_fleet_validation(lab_env):
    from hotspare.fleet.load import load_fleet

    assert [service.name for service in load_fleet(lab_env["fleet_file"]).services] == ["app1", "app2", "app3"]


# ----- outages -------------------------------------------------------------------------------


def test_fail_makes_ssh_time_out_and_heal_restores(lab, lab_env):
    assert lab.fail("mirror-east") == ["mirror-east"]
    try:
        started = time.monotonic()
        result = ssh(lab_env, "mirror-east", "true", connect_timeout=2)
        assert result.returncode == 255
        assert "timed out" in result.stderr
        assert time.monotonic() - started >= 1.5, "a failed host must be silent, not refuse"
        assert ssh(lab_env, "prod-east", "true").returncode == 0
        host_status = lab.status()["hosts"]["mirror-east"]
        assert host_status["failed"] and not host_status["reachable"]
    finally:
        assert lab.heal("mirror-east") == ["mirror-east"]
    assert ssh(lab_env, "mirror-east", "true", connect_timeout=5).returncode == 0


def test_failing_a_facility_fails_all_its_hosts(lab, lab_env):
    vault = sorted(name for name, host in lab_env["hosts"].items() if host["facility"] == "vault")
    assert sorted(lab.fail("vault")) == vault == ["storage-vault", "web-vault"]
    try:
        assert all(parallel(lambda name: tcp_times_out(lab_env["hosts"][name]["address"]), vault))
        assert not tcp_times_out(lab_env["hosts"]["prod-east"]["address"])
    finally:
        lab.heal("vault")
    assert not any(parallel(lambda name: tcp_times_out(lab_env["hosts"][name]["address"]), vault))


# ----- lifecycle -----------------------------------------------------------------------------


def test_up_again_returns_the_same_env(lab, lab_env):
    from hotspare.lab import Lab

    assert lab.up() == lab_env
    assert Lab.from_env(lab_env).up() == lab_env


def test_status_reports_everything_running(lab):
    status = lab.status()
    assert status["up"] and status["dns"]["answering"] and status["smtp"]["answering"]
    assert all(host["reachable"] and not host["failed"] for host in status["hosts"].values())
    assert all(status["apps"].values())


def test_another_folder_cannot_take_a_used_slot(lab, tmp_path):
    from hotspare.lab import Lab, LabError

    with pytest.raises(LabError, match=f"slot {lab.slot} is used by the lab in"):
        Lab(tmp_path / "intruder", slot=lab.slot).up()


def test_up_refuses_a_dns_port_another_program_holds(tmp_path):
    from hotspare.lab import Lab, LabError

    slot = free_slot()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as named does
        squatter.bind(("127.0.0.1", 5390 + slot))
        with pytest.raises(LabError, match=f"port 127.0.0.1:{5390 + slot} of slot {slot} is already in use"):
            Lab(tmp_path / "squatted", slot=slot).up()
    assert slot_leftovers(slot) == []


def test_up_refuses_a_phone_port_another_program_holds_and_names_the_holder(tmp_path):
    from hotspare.lab import Lab, LabError
    from hotspare.lab.phone import port_of

    slot = free_slot()
    with socket.socket() as squatter:  # e.g. a phone endpoint another lab left behind
        squatter.bind(("127.0.0.1", port_of(slot)))
        squatter.listen()
        with pytest.raises(
            LabError,
            match=f"phone endpoint port 127.0.0.1:{port_of(slot)} of slot {slot} is already in use by pid {os.getpid()} ",
        ):
            Lab(tmp_path / "squatted", slot=slot).up()
    assert slot_leftovers(slot) == []


def test_a_lab_whose_state_files_were_lost_leaves_nothing_for_the_next_lab_on_its_slot(tmp_path):
    """A crashed lab whose state files are gone: the next lab on the slot (another folder) finds
    every process it started by the slot's mark and stops it, so its phone endpoint never takes
    the new lab's calls; after `down` no process of the slot is left."""
    from hotspare.lab import Lab
    from hotspare.lab.phone import port_of
    from hotspare.lab.processes import marked_pids, port_holder

    slot = free_slot()
    lost, lost_env = Lab(tmp_path / "lost", slot=slot), None
    try:
        lost_env = lost.up()
        old = set(marked_pids(slot))
        old_phone = json.loads((lost.directory / "state.json").read_text())["phone"]["pid"]
        assert old_phone in old and len(old) >= len(lab_pids(lost))  # sshds rewrite their environment
        for name in ("state.json", "web.json", "env.json"):
            (lost.directory / name).unlink()
        following = Lab(tmp_path / "following", slot=slot)
        env = following.up()
        try:
            assert not any(pid_alive(pid) for pid in old), "a process of the lost lab is still running"
            new_phone = json.loads((following.directory / "state.json").read_text())["phone"]["pid"]
            assert port_holder(port_of(slot)).startswith(f"pid {new_phone} ")
            assert ssh(env, "prod-east", "hostname").stdout.strip() == "prod-east"
        finally:
            following.down()
        assert marked_pids(slot) == [] and slot_leftovers(slot) == []
    finally:
        lost.down()  # its disks (the folder's), if the test stopped early also its processes
    assert lost_env is not None and marked_pids(slot) == []


def test_env_of_a_lab_that_is_not_up_says_so(tmp_path):
    from hotspare.lab import Lab, LabError

    with pytest.raises(LabError, match="is not up"):
        Lab(tmp_path / "never", slot=free_slot()).env()


def test_cli_prints_env_and_status(lab, lab_env, capsys):
    from hotspare.cli import main

    assert main(["lab", "env", "--json", "--dir", str(lab.directory)]) == 0
    assert json.loads(capsys.readouterr().out) == lab_env
    assert main(["lab", "status", "--json", "--dir", str(lab.directory)]) == 0
    assert json.loads(capsys.readouterr().out)["slot"] == lab.slot


def test_register_blocks_saves_the_lab_credentials(lab, lab_env, prefect_api):
    from blocks.credentials import BackupRepositoryPassword, DnsUpdateKey, SmtpServer, SshCredentials

    lab.register_blocks()
    stored = json.loads(Path(lab_env["secrets_file"]).read_text())
    assert SshCredentials.load("lab-ssh").private_key.get_secret_value() == stored["ssh"]["private_key"]
    assert DnsUpdateKey.load("lab-tsig").secret.get_secret_value() == stored["tsig"]["secret"]
    assert SmtpServer.load("lab-smtp").port == lab_env["smtp"]["port"]
    for service, password in stored["restic"]["passwords"].items():  # one repository password per service
        assert BackupRepositoryPassword.load(f"lab-restic-{service}").password.get_secret_value() == password


def lab_pids(lab) -> dict[str, int]:
    return {entry["name"]: entry["pid"] for entry in json.loads((lab.directory / "state.json").read_text())["daemons"]}


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def slot_leftovers(slot: int) -> list[str]:
    """Namespaces, links and routes of a slot that still exist."""
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
    return (
        [name for name in names if name.startswith(f"hs{slot}-")]
        + [f"link hs{slot}br"] * (f" hs{slot}br:" in links)
        + [f"route 10.211.{70 + slot}"] * (f"10.211.{70 + slot}." in routes)
    )


def test_crashed_lab_is_cleaned_up_by_the_next_up_and_down_is_idempotent(tmp_path):
    from hotspare.lab import Lab, LabError

    slot = free_slot()
    crashed = Lab(tmp_path / "crash", slot=slot)
    env = crashed.up()
    try:
        app_pid = int((Path(env["hosts"]["prod-east"]["root"]) / "srv/app1/run/http.pid").read_text())
        old = lab_pids(crashed)
        for name, pid in old.items():  # a crash: daemons die, namespaces and apps stay
            if name.startswith("sshd") or name == "named":
                os.kill(pid, signal.SIGKILL)
        wait_for("killed daemons to die", lambda: not any(pid_alive(pid) for name, pid in old.items() if name != "smtp"))
        assert Lab(crashed.directory, slot=slot).up() == env  # a new process would do the same
        new = lab_pids(crashed)
        assert not set(new.values()) & set(old.values())
        assert not pid_alive(app_pid), "the crashed lab's app was left running"
        assert ssh(env, "prod-east", "hostname").stdout.strip() == "prod-east"
        assert dig(env, "app1.lab.test") == env["hosts"]["prod-east"]["address"]

        # Worse: state.json lost too. Leftovers are found by their slot's names.
        for pid in lab_pids(crashed).values():
            os.kill(pid, signal.SIGKILL)
        (crashed.directory / "state.json").unlink()
        assert slot_leftovers(slot)
        assert Lab(crashed.directory, slot=slot).up() == env
        assert ssh(env, "mirror-west", "hostname").stdout.strip() == "mirror-west"
        last = lab_pids(crashed) if (crashed.directory / "state.json").exists() else {}
    finally:
        crashed.down()
    assert slot_leftovers(slot) == []
    assert not any(pid_alive(pid) for pid in last.values())
    crashed.down()  # a second down is a no-op
    with pytest.raises(LabError, match="is not up"):
        crashed.env()
