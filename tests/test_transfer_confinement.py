"""The transfer key against everything a key holder on the mirror can send, in the lab.

Production serves a transfer through rsync's own daemon, chrooted into a view of the service's
declared paths (``planning/transfer_keys.py``). These tests take the real key from a live
transfer onto the mirror (where the ``from=`` option lets it in) and send, with it:

- every attack that read production's whole root filesystem through the former guard
  (quoted ``--log-format`` values, ``--files-from``/``--include-from``/``--exclude-from`` of any
  file, filter ``merge``/``dir-merge`` rules, ``--iconv``);
- a generated corpus of remote command lines (quotes, backslashes, every kind of whitespace,
  every rsync option that names a file or folder), each as ssh's remote command;
- the same options through rsync's daemon protocol, which is what production's rsync reads;
- reads of paths outside the service and through links planted in its data.

Canary files that are not the service's (root-only, in production's /etc and /srv, and in
/root) must never appear in anything the client receives, stdout and stderr included; a read of
the service's own data with the same key in the same batch, before and after, proves the key
was live throughout. The whole batch runs on the mirror, four at a time, each job a session of
its own on one SSH connection made with the key.
"""

from __future__ import annotations

import json
import secrets
import subprocess

import pytest

from hotspare.planning import transfer_keys
from hotspare.planning.replication import SSH_OPTIONS, source_paths
from tasks.transfer_access import transfer_access

from lab_helpers import host_path, ssh_argv

pytestmark = pytest.mark.lab

SERVICE = "app1"
FILE_OPTIONS = (
    "--files-from",
    "--include-from",
    "--exclude-from",
    "--log-file",
    "--write-batch",
    "--only-write-batch",
    "--read-batch",
    "--partial-dir",
    "--temp-dir",
    "--backup-dir",
    "--compare-dest",
    "--copy-dest",
    "--link-dest",
    "--iconv",
    "--rsync-path",
    "-e",
    "--log-format",
    "--out-format",
    "--log-file-format",
    "--filter",
)
FILTER_RULES = ("merge {path}", "dir-merge {path}", ". {path}", ": {path}", "merge,- {path}", "dir-merge,n- {path}")
WHITESPACE = (" ", "\t", "\n", "\v", "\f", "\r", "  \t ")

# Runs on the mirror: writes the key, runs each job (ssh with a raw remote command, or an rsync
# client reading the transfer module), four at a time, and answers with what each client got.
BATCH = r"""
import json, os, subprocess, sys, tempfile
from concurrent.futures import ThreadPoolExecutor
request = json.load(sys.stdin)
folder = tempfile.mkdtemp(prefix="hotspare-attack-")
os.chmod(folder, 0o700)
key, known = os.path.join(folder, "key"), os.path.join(folder, "known_hosts")
with open(key, "w", opener=lambda path, flags: os.open(path, flags, 0o600)) as handle:
    handle.write(request["key"])
with open(known, "w") as handle:
    handle.write(request["known_hosts"] + "\n")
ssh = ["ssh", "-i", key, "-p", str(request["port"]), *request["ssh_options"].split(), "-o", "UserKnownHostsFile=" + known,
       "-o", "ControlPath=" + os.path.join(folder, "control")]

def received(target):
    found = []
    for top, folders, files in os.walk(target):
        for name in folders + files:
            path = os.path.join(top, name)
            found.append(path)
            if os.path.islink(path):
                found.append(os.readlink(path))
            elif os.path.isfile(path):
                with open(path, "rb") as handle:
                    found.append(handle.read(1 << 20).decode(errors="replace"))
    return "\n".join(found)

def run(numbered):
    number, job = numbered
    target = os.path.join(folder, "received-%d" % number)
    os.mkdir(target)
    if job["kind"] == "ssh":
        argv = [*ssh, request["login"], job["line"]]
    else:
        argv = ["rsync", "-e", " ".join(ssh), *job["words"], target + "/"]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=30, stdin=subprocess.DEVNULL, cwd=target)
        answer = {"rc": done.returncode, "out": done.stdout.decode(errors="replace"), "err": done.stderr.decode(errors="replace")}
    except subprocess.TimeoutExpired as expired:
        answer = {"rc": "timeout", "out": (expired.stdout or b"").decode(errors="replace"),
                  "err": (expired.stderr or b"").decode(errors="replace")}
    answer["received"] = received(target)
    return answer

try:
    # one connection, authenticated with the key, carries every job as a session of its own (each
    # runs the forced command anew): the corpus costs no SSH handshake per command line. The
    # master goes to the background: it must hold none of this program's pipes.
    with open(os.path.join(folder, "master.log"), "wb") as log:
        master = subprocess.run([*ssh, "-o", "ControlMaster=yes", "-o", "ControlPersist=300", "-N", "-f", request["login"]],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, timeout=30)
    if master.returncode != 0:
        sys.exit("the key's connection failed: " + open(os.path.join(folder, "master.log")).read())
    with ThreadPoolExecutor(4) as pool:
        json.dump(list(pool.map(run, enumerate(request["jobs"]))), sys.stdout)
finally:
    subprocess.run([*ssh, "-O", "exit", request["login"]], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=30)
    subprocess.run(["rm", "-rf", folder])
"""


@pytest.fixture(scope="module")
def planted(lab_env):
    """Canary files on production outside the service's paths, and links in its data that point
    out of it; all removed afterwards."""
    service = lab_env["services"][SERVICE]
    production = service["production"]
    token = secrets.token_hex(8)
    canary = f"CANARY-CONTENT-{secrets.token_hex(8)}"  # what the files hold; their names differ
    data = service["data_path"]
    files = {
        "/etc/hotspare-canary": host_path(lab_env, production, "/etc/hotspare-canary"),
        "/srv/hotspare-canary": host_path(lab_env, production, "/srv/hotspare-canary"),
        f"/root/hotspare-canary-{token}": host_path(lab_env, production, f"/root/hotspare-canary-{token}"),
    }
    links = {
        "escape-root": "/",
        "escape-canary": "/etc/hotspare-canary",
        "escape-up": "../../../..",
        "escape-etc": "/etc",
    }
    made = []
    try:
        for path in files.values():
            path.write_text(f"{canary} root only\n")  # never a file's name: rsync may echo names
            path.chmod(0o600)
            made.append(path)
        for name, target in links.items():
            link = host_path(lab_env, production, f"{data}/{name}")
            link.symlink_to(target)
            made.append(link)
        yield {"canary": canary, "paths": list(files), "data": data, "links": list(links), "service": service}
    finally:
        for path in made:
            path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def live_key(fleet, lab_env, planted):
    """One transfer key installed for the whole module, as a copy would install it."""
    service = planted["service"]
    paths = source_paths(fleet.service(SERVICE).model_dump(mode="json"))
    with transfer_access(fleet, SERVICE, service["production"], service["mirror"], paths, "confinement-test") as (peer, stdin):
        known_hosts, key = stdin.decode().split("\n", 1)
        yield {"peer": peer, "known_hosts": known_hosts, "key": key}


def run_batch(lab_env, planted, live_key, jobs: list[dict]) -> list[dict]:
    """Run ``jobs`` on the mirror with the live key; what each client received, in order."""
    peer = live_key["peer"]
    request = {
        "key": live_key["key"],
        "known_hosts": live_key["known_hosts"],
        "port": peer.port,
        "ssh_options": SSH_OPTIONS.replace("ConnectTimeout=10", "ConnectTimeout=5"),
        "login": f"{peer.user}@{peer.address}",
        "jobs": jobs,
    }
    argv = ssh_argv(lab_env, planted["service"]["mirror"], ["python3", "-I", "-c", BATCH])
    done = subprocess.run(argv, input=json.dumps(request).encode(), capture_output=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    results = json.loads(done.stdout)
    assert len(results) == len(jobs)
    return results


def module_source(live_key, path: str) -> str:
    peer = live_key["peer"]
    return f"{peer.user}@{peer.address}::{transfer_keys.MODULE}{path}"


def positive_control(live_key, planted) -> dict:
    return {"kind": "rsync", "words": ["-a", "--relative", module_source(live_key, planted["data"] + "/")]}


def assert_service_data_read(result: dict, planted) -> None:
    """The key was live: the service's data arrived, its links as links, no canary."""
    assert result["rc"] == 0, result["err"]
    assert planted["data"].lstrip("/") in result["received"], result["received"][:500]
    assert "escape-canary\n/etc/hotspare-canary" in result["received"]  # the link itself, as a link
    assert planted["canary"] not in result["received"]


def quoted_forms(value: str) -> list[str]:
    """``value`` as a hostile client might write it on a command line."""
    escaped = "".join("\\" + character for character in value)
    return [value, f"'{value}'", f'"{value}"', escaped, f"'{value[:3]}'{value[3:]}", f'"{value[:4]}"\\{value[4:]}']


def remote_command_corpus(planted) -> list[str]:
    """At least 200 remote command lines: every file-naming option, quoted and spaced every way."""
    data, canaries = planted["data"], planted["paths"]
    sender = "rsync --server --sender -vlogDtpre.iLsfxCIvu"
    lines = []
    for option in FILE_OPTIONS:
        for index, target in enumerate(canaries):
            for form in quoted_forms(target)[index % 2 :: 2]:
                space = WHITESPACE[len(lines) % len(WHITESPACE)]
                joined = f"{option}={form}" if option.startswith("--") and len(lines) % 2 else f"{option}{space}{form}"
                lines.append(f"{sender} {joined} . {data}")
    for rule in FILTER_RULES:
        for target in canaries:
            for form in quoted_forms(rule.format(path=target))[:3]:
                lines.append(f"{sender} --filter={form} . {data}")
    # the guard's bypass: a quoted --log-format value that hid more paths from its tokeniser
    for target in canaries + ["/etc/ssh", "/"]:
        lines.append(f"{sender} --log-format='%f . {target}' . {data}")
        lines.append(f'{sender} "--log-format=%n {target}" . {data} {target}')
        lines.append(f"{sender} --log-format=%f\\ .\\ {target} . {data}")
    lines += [f"rsync --server --sender -vlogDtpre.iLsfxCIvu . {target}" for target in canaries + ["/", "/etc", "/root"]] + [
        f"{sender} -L . {data}/escape-canary",
        f"{sender} --copy-unsafe-links . {data}/escape-root/etc",
        f"cat {canaries[0]}",
        "sh -c 'cat /etc/hotspare-canary'",
        "rsync --server --daemon --config=/dev/stdin .",
        f"rsync --server --sender{WHITESPACE[1]}-e.LsfxC{WHITESPACE[2]}.{WHITESPACE[3]}{canaries[0]}",
    ]
    return list(dict.fromkeys(lines))


def daemon_request_corpus(planted, live_key) -> list[list[str]]:
    """rsync clients asking the transfer module for what is not the service's: options production's
    rsync reads (directly or through -M), paths outside the view and through planted links."""
    data, canaries = planted["data"], planted["paths"]
    source = module_source(live_key, data + "/")
    requests = []
    for option in FILE_OPTIONS:
        if option in ("-e",):
            continue
        for target in canaries[:2]:
            value = f":{target}" if option == "--files-from" else target
            requests.append(["-a", "--relative", f"{option}={value}", source])
            requests.append(["-a", "--relative", f"-M{option}={target}", source])
    for rule in FILTER_RULES:
        requests.append(["-a", "--relative", f"--filter={rule.format(path=canaries[0])}", source])
    requests += [
        ["-a", "--relative", module_source(live_key, path)]
        for path in canaries
        + [
            "/",
            "/etc/",
            "/etc/ssh/",
            f"{data}/escape-root/etc/hotspare-canary",
            f"{data}/escape-etc/hotspare-canary",
            f"{data}/escape-up/etc/hotspare-canary",
            f"{data}/../../../etc/hotspare-canary",
            "/../../etc/hotspare-canary",
        ]
    ]
    requests += [
        [*option.split(), "--relative", module_source(live_key, f"{data}/{link}")]
        for option in ("-aL", "-a --copy-unsafe-links", "-a --copy-dirlinks", "-aK")
        for link in planted["links"]
    ]
    requests += [
        ["-a", "--relative", "--iconv=utf8,latin1", source],
        ["-a", "--rsync-path=cat /etc/hotspare-canary", source],
        ["-a", "--relative", "-M--server", "-M--sender", "-M/etc/hotspare-canary", source],
    ]
    return requests


def test_the_same_key_reads_the_services_own_data(lab_env, planted, live_key):
    """Positive control, also for the attacks below: the key from the mirror reads the service's
    data through the module, laid out at its absolute path, links sent as links."""
    [result] = run_batch(lab_env, planted, live_key, [positive_control(live_key, planted)])
    assert_service_data_read(result, planted)


def test_no_remote_command_line_reaches_anything_but_rsyncs_daemon(lab_env, planted, live_key):
    """Whatever command line the client sends, production runs the forced command: the daemon
    greets and waits for a protocol request. No canary in any output."""
    lines = remote_command_corpus(planted)
    assert len(lines) >= 200, len(lines)
    jobs = [
        positive_control(live_key, planted),
        *({"kind": "ssh", "line": line} for line in lines),
        positive_control(live_key, planted),
    ]
    results = run_batch(lab_env, planted, live_key, jobs)
    assert_service_data_read(results[0], planted)
    assert_service_data_read(results[-1], planted)
    for line, result in zip(lines, results[1:-1]):
        everything = result["out"] + result["err"] + result["received"]
        assert planted["canary"] not in everything, (line, everything[:2000])
        assert "Permission denied" not in result["err"], (line, result["err"])  # the key was let in
        assert result["out"].startswith("@RSYNCD: "), (line, result)  # and production's rsync daemon answered


def test_no_daemon_request_reads_outside_the_services_paths(lab_env, planted, live_key):
    """The same options and paths through rsync's protocol, the way production's rsync reads them."""
    requests = daemon_request_corpus(planted, live_key)
    jobs = [{"kind": "rsync", "words": words} for words in requests]
    results = run_batch(
        lab_env, planted, live_key, [positive_control(live_key, planted), *jobs, positive_control(live_key, planted)]
    )
    assert_service_data_read(results[0], planted)
    assert_service_data_read(results[-1], planted)
    refused = 0
    for words, result in zip(requests, results[1:-1]):
        everything = result["out"] + result["err"] + result["received"]
        assert planted["canary"] not in everything, (words, everything[:2000])
        assert "Permission denied (publickey" not in result["err"], (words, result["err"])
        refused += "The server is configured to refuse" in result["err"]
    assert refused >= len(FILE_OPTIONS)  # the daemon itself said no to the options it does not serve


def test_production_is_unchanged_by_the_attacks(lab_env, planted, live_key):
    """Options that write (log files, batches, temporary, partial and backup folders, deletions)
    left nothing on production and removed nothing from the service's data."""
    service = planted["service"]
    data = host_path(lab_env, service["production"], planted["data"])
    before = sorted(str(path) for path in data.rglob("*"))
    source = module_source(live_key, planted["data"] + "/")
    written = f"/etc/hotspare-written-{secrets.token_hex(4)}"
    jobs = [
        {"kind": "rsync", "words": ["-a", f"-M{option}={value}", source]}
        for option, value in (
            ("--log-file", written),
            ("--write-batch", written),
            ("--only-write-batch", written),
            ("--temp-dir", "/etc"),
            ("--partial-dir", "/etc"),
            ("--backup-dir", "/etc"),
        )
    ]
    jobs += [{"kind": "rsync", "words": ["-a", option, source]} for option in ("--remove-source-files", "-M--delete")]
    for result in run_batch(lab_env, planted, live_key, jobs):
        assert planted["canary"] not in result["out"] + result["err"] + result["received"]
    assert not host_path(lab_env, service["production"], written).exists()
    assert sorted(str(path) for path in data.rglob("*")) == before
