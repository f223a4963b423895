"""Pure planning of what a copy may bring into a live tree: hostile data is neutralised, and
whatever activation replaced is listed for the operator.

No network, no Prefect, no clock. A copy comes from production, which may be compromised, and a
mirror serves several customers. Before the service's app runs on a copy (failover, failback
and reprotect activation, rebuild; the drill calls the same program on its bubble), every live
path is scanned on the host itself by ONE program (``NEUTRALISE_PROGRAM``, one round trip per
activation, whatever the number of files) that leaves none of these as it was planted:

- **device nodes** (block, character): removed — a world-readable loop device is a raw read of
  another customer's disk;
- **FIFOs and sockets**: removed — nothing a copy of files needs, and a way to talk to another
  process on the shared host;
- **setuid/setgid bits** on files: cleared (directories keep setgid: it only chooses a group);
- **file capabilities** (the ``security.capability`` extended attribute): removed;
- **symbolic links that resolve outside the service's declared paths** (absolute, or relative
  and climbing out with ``..``, judged both by the link's text and by where the kernel resolves
  it now): replaced by an empty file, so the app cannot serve the host's ``/etc/shadow``.

The fleet may allow, below one path of the service, what it really needs (``allow_special``:
``devices``, ``fifos``, ``sockets``, ``setuid``, ``setgid``, ``capabilities``, ``links_outside``);
an allowed item is kept and still named. Every item is named in the run log and the run's
artifact. The point-in-time copy is never touched: it keeps the originals for forensics.

The program is Python 3 (already on every host: ``rrsync`` is Python) so that names are bytes
from end to end (a newline or an invalid UTF-8 byte in a name cannot split or forge a record),
extended attributes are read by the kernel call itself (no ``attr`` package), and the walk stays
on one filesystem like ``find -xdev``. Its input (paths, allowances) arrives on stdin as JSON,
never in the command line; its output is one JSON document.

The same program lists what activation kept aside (``kept``): every file of the former live
tree — the rsync ``--backup-dir`` of this run, or the live tree a snapshot swap renamed aside —
that differs from the copy that went live (absent, another type, size, modification time or link
text), so an operator can merge writes that existed only there.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

KINDS = ("devices", "fifos", "sockets", "setuid", "setgid", "capabilities", "links_outside")
# The most names of kept-aside files one run reports (the count is always complete).
KEPT_LIMIT = 1000

NEUTRALISE_PROGRAM = r"""
import json, os, stat, sys
spec = json.load(sys.stdin)
enc = os.fsencode
declared = [enc(p).rstrip(b"/") or b"/" for p in spec["declared"]]
allowances = [(enc(a["path"]).rstrip(b"/") or b"/", set(a["allow"])) for a in spec["allow"]]
limit = spec["kept_limit"]
out = {"findings": [], "kept": [], "kept_count": 0, "scanned": 0, "errors": []}

def below(path, base):
    return path == base or base == b"/" or path.startswith(base + b"/")

def inside(path):
    return any(below(path, base) for base in declared)

def allowed(live, kind):
    return any(kind in kinds and below(live, base) for base, kinds in allowances)

def name(path):
    return os.fsdecode(path)

def note(kind, live, action, detail=""):
    out["findings"].append({"kind": kind, "path": name(live), "action": action, "detail": detail})

def outside_link(path, live, scan, live_root):
    text = os.readlink(path)
    lexical = os.path.normpath(os.path.join(os.path.dirname(live), text))
    real = os.path.realpath(path)
    if real == scan or real.startswith(scan + b"/"):
        real = live_root + real[len(scan):]
    if inside(lexical) and inside(real):
        return None
    return name(text)

def judge(path, live, st, scan, live_root, act):
    mode = st.st_mode
    kind = None
    if stat.S_ISBLK(mode) or stat.S_ISCHR(mode):
        kind, action = "devices", "removed"
    elif stat.S_ISFIFO(mode):
        kind, action = "fifos", "removed"
    elif stat.S_ISSOCK(mode):
        kind, action = "sockets", "removed"
    if kind:
        if allowed(live, kind):
            return note(kind, live, "allowed")
        if act:
            os.unlink(path)
        return note(kind, live, action if act else "found")
    if stat.S_ISLNK(mode):
        target = outside_link(path, live, scan, live_root)
        if target is None:
            return
        if allowed(live, "links_outside"):
            return note("links_outside", live, "allowed", target)
        if act:
            os.unlink(path)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        return note("links_outside", live, "replaced by an empty file" if act else "found", target)
    if not stat.S_ISREG(mode):
        return
    for bit, kind in ((stat.S_ISUID, "setuid"), (stat.S_ISGID, "setgid")):
        if mode & bit:
            if allowed(live, kind):
                note(kind, live, "allowed")
            else:
                if act:
                    mode &= ~bit
                    os.chmod(path, stat.S_IMODE(mode), follow_symlinks=False)
                note(kind, live, "bit cleared" if act else "found")
    try:
        os.getxattr(path, "security.capability", follow_symlinks=False)
    except OSError:
        return
    if allowed(live, "capabilities"):
        return note("capabilities", live, "allowed")
    if act:
        os.removexattr(path, "security.capability", follow_symlinks=False)
    note("capabilities", live, "removed" if act else "found")

def walk(top, visit):
    try:
        first = os.lstat(top)
    except FileNotFoundError:
        return
    stack = [(top, first)]
    while stack:
        path, st = stack.pop()
        visit(path, st)
        if stat.S_ISDIR(st.st_mode):
            try:
                entries = sorted(os.scandir(path), key=lambda e: e.name)
            except OSError as error:
                out["errors"].append(name(path) + ": " + error.strerror)
                continue
            for entry in reversed(entries):
                try:
                    child = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(child.st_mode) and child.st_dev != first.st_dev:
                    out["errors"].append(name(entry.path) + ": another filesystem, not scanned")
                    continue
                stack.append((entry.path, child))

def differs(kept, live_path, st):
    try:
        now = os.lstat(live_path)
    except FileNotFoundError:
        return "absent from the copy that went live"
    if stat.S_IFMT(now.st_mode) != stat.S_IFMT(st.st_mode):
        return "another type in the copy"
    if stat.S_ISLNK(st.st_mode):
        return None if os.readlink(kept) == os.readlink(live_path) else "another link target"
    if stat.S_ISREG(st.st_mode) and (now.st_size != st.st_size or now.st_mtime_ns != st.st_mtime_ns):
        return "other content (size or modification time)"
    return None

for kept_root, live_root in spec["kept"]:
    kept_root, live_root = enc(kept_root), enc(live_root)
    def visit(path, st, kept_root=kept_root, live_root=live_root):
        if stat.S_ISDIR(st.st_mode):
            return
        live = live_root + path[len(kept_root):]
        why = differs(path, live, st)
        if why:
            out["kept_count"] += 1
            if len(out["kept"]) < limit:
                out["kept"].append({"path": name(live), "kept": name(path), "why": why})
    walk(kept_root, visit)

for scan_root, live_root, act in spec["roots"]:
    scan_root, live_root = enc(scan_root), enc(live_root)
    def visit(path, st, scan_root=scan_root, live_root=live_root, act=act):
        out["scanned"] += 1
        try:
            judge(path, live_root + path[len(scan_root):], st, scan_root, live_root, act)
        except OSError as error:
            out["errors"].append(name(path) + ": " + error.strerror)
    walk(scan_root, visit)

json.dump(out, sys.stdout)
"""


@dataclass(frozen=True)
class Finding:
    kind: str  # one of KINDS
    path: str  # the live path (surrogate escapes for bytes that are not UTF-8)
    action: str  # removed | bit cleared | replaced by an empty file | allowed | found
    detail: str = ""  # a link's target

    def sentence(self) -> str:
        what = {
            "devices": "device node",
            "fifos": "FIFO",
            "sockets": "socket",
            "setuid": "setuid bit",
            "setgid": "setgid bit",
            "capabilities": "file capabilities",
            "links_outside": "symbolic link outside the service's paths",
        }[self.kind]
        target = f" (-> {printable(self.detail)})" if self.detail else ""
        if self.action == "allowed":
            return f"{what} kept at {printable(self.path)}{target}: allowed by the fleet's allow_special"
        return f"{what} at {printable(self.path)}{target}: {self.action}"


@dataclass(frozen=True)
class KeptFile:
    path: str  # the live path it stood at
    kept: str  # where it is kept now
    why: str

    def line(self) -> str:
        return f"{printable(self.path)} (kept as {printable(self.kept)}: {self.why})"


@dataclass(frozen=True)
class Report:
    findings: tuple[Finding, ...]
    kept: tuple[KeptFile, ...]
    kept_count: int
    scanned: int
    errors: tuple[str, ...]

    def neutralised(self) -> tuple[Finding, ...]:
        return tuple(finding for finding in self.findings if finding.action != "allowed")

    def summary(self) -> str:
        kinds = sorted({finding.kind for finding in self.neutralised()})
        return (
            f"{self.scanned} live item(s) scanned: "
            + (f"{len(self.neutralised())} neutralised ({', '.join(kinds)})" if kinds else "nothing hostile")
            + (
                f", {len(self.findings) - len(self.neutralised())} allowed"
                if len(self.findings) != len(self.neutralised())
                else ""
            )
            + (f"; {self.kept_count} replaced file(s) kept aside" if self.kept_count else "")
        )

    def as_dict(self) -> dict:
        return {
            "summary": self.summary(),
            "neutralised": [finding.sentence() for finding in self.findings],
            "kept_aside": [kept.line() for kept in self.kept],
            "kept_aside_count": self.kept_count,
            "errors": list(self.errors),
        }

    def markdown(self) -> list[str]:
        """Lines for a run's artifact: what was neutralised and which replaced files are kept."""
        lines = ["", "## Hostile data", self.summary()]
        lines += [f"- {finding.sentence()}" for finding in self.findings]
        lines += [f"- could not scan: {printable(error)}" for error in self.errors]
        if self.kept_count:
            lines += [
                "",
                f"## Kept aside: {self.kept_count} file(s) that differ from the copy that went live",
                "Merge any late write from there by hand.",
            ]
            lines += [f"- {kept.line()}" for kept in self.kept]
            if self.kept_count > len(self.kept):
                lines.append(f"- … and {self.kept_count - len(self.kept)} more")
        return lines


def printable(text: str) -> str:
    """A name safe for a log line or Markdown: control characters, backslashes and bytes that are
    not UTF-8 escaped, so a planted name can neither break a line nor forge one."""
    raw = text.encode("utf-8", "surrogateescape")
    out = []
    for character in raw.decode("utf-8", "backslashreplace"):
        if character == "\\" or (ord(character) < 32 or ord(character) == 127):
            out.append(character if character == "\\" else f"\\x{ord(character):02x}")
        else:
            out.append(character)
    return "".join(out).replace("`", "\\x60")


def neutralise_argv(within: Sequence[str] = ()) -> list[str]:
    """The one program of an activation; its input is ``neutralise_stdin``. ``within`` is a
    prefix that runs it inside other namespaces (the drill's ``nsenter`` into its bubble)."""
    return [*within, "python3", "-c", NEUTRALISE_PROGRAM]


def neutralise_stdin(
    roots: Sequence[tuple[str, str]],
    declared: Iterable[str],
    allow: Iterable[Mapping],
    kept: Sequence[tuple[str, str]] = (),
    act: bool = True,
) -> bytes:
    """Input of the program. ``roots``: (folder to scan, the live path it is or becomes[, act])
    — the same for a tree already in place, a staged folder for one about to be swapped in, the
    read-only copy (act False) to name what rsync left out.
    ``declared``: the service's paths (a link may point anywhere inside them). ``allow``: the
    fleet's ``allow_special`` entries (``path``, ``allow``). ``kept``: (kept-aside folder, the
    live path it mirrors) to list files that differ. ``act`` False only reports (forensics)."""
    return json.dumps(
        {
            "roots": [[*pair[:2], pair[2] if len(pair) > 2 else act] for pair in roots],
            "declared": list(declared),
            "allow": [{"path": entry["path"], "allow": list(entry["allow"])} for entry in allow],
            "kept": [list(pair) for pair in kept],
            "kept_limit": KEPT_LIMIT,
        }
    ).encode()


def parse_report(output: str) -> Report:
    """The program's JSON output as a ``Report``."""
    data = json.loads(output)
    return Report(
        findings=tuple(Finding(item["kind"], item["path"], item["action"], item.get("detail", "")) for item in data["findings"]),
        kept=tuple(KeptFile(item["path"], item["kept"], item["why"]) for item in data["kept"]),
        kept_count=int(data["kept_count"]),
        scanned=int(data["scanned"]),
        errors=tuple(data["errors"]),
    )


# What rsync itself can keep out of a live path, by its own options, per kind.
RSYNC_STRIPS = {
    "devices": ("--no-devices",),
    "fifos": ("--no-specials",),  # rsync's "specials" are FIFOs and sockets together
    "sockets": ("--no-specials",),
    "capabilities": ("--filter=-x security.capability",),
}


def rsync_strips(allow: Iterable[Mapping]) -> tuple[tuple[str, ...], frozenset[str]]:
    """(rsync options, kinds they keep out) for a service's ``allow_special``: a kind is left
    to rsync only when the service allows it nowhere (rsync's options apply to a whole run);
    setuid/setgid bits are cleared on files by ``--chmod`` the same way."""
    allowed = {kind for entry in allow for kind in entry["allow"]}
    kinds = {kind for kind in RSYNC_STRIPS if kind not in allowed}
    if "fifos" in kinds and "sockets" not in kinds or "sockets" in kinds and "fifos" not in kinds:
        kinds -= {"fifos", "sockets"}
    options = list(dict.fromkeys(option for kind in sorted(kinds) for option in RSYNC_STRIPS[kind]))
    bits = "".join(letter for kind, letter in (("setuid", "u"), ("setgid", "g")) if kind not in allowed)
    if bits:
        options.append(f"--chmod=F{bits}-s")
        kinds |= {kind for kind in ("setuid", "setgid") if kind not in allowed}
    return tuple(options), frozenset(kinds)


def left_out(report: Report, kinds: frozenset[str]) -> Report:
    """The program's report with the findings of the read-only copy (scanned with act False to
    name what rsync kept out of the live paths) turned into what rsync did for ``kinds``, and
    dropped for the other kinds (the scan of the live paths names those)."""
    done_by_rsync = {"setuid": "bit cleared by rsync", "setgid": "bit cleared by rsync", "capabilities": "not copied by rsync"}
    findings = []
    for finding in report.findings:
        if finding.action != "found":
            findings.append(finding)
        elif finding.kind in kinds:
            findings.append(
                Finding(finding.kind, finding.path, done_by_rsync.get(finding.kind, "left out by rsync"), finding.detail)
            )
    return Report(tuple(findings), report.kept, report.kept_count, report.scanned, report.errors)


def declared_paths(spec: Mapping) -> list[str]:
    """Every path a service makes live (data, app, configuration, account files)."""
    accounts = spec.get("accounts") or {}
    return [*spec["data_paths"], *spec.get("app_paths", []), *spec.get("config_paths", []), *accounts.get("files", [])]


def backup_folder(service_root: str, copy_id: str, run_tag: str) -> str:
    """Where one activation keeps what its rsync replaced or deleted (``--backup-dir``),
    named per run: ``<service root>/replaced/<copy id>-<run tag>``."""
    if "/" in copy_id or "/" in run_tag or not run_tag:
        raise ValueError(f"not a copy id and run tag for a folder name: {copy_id!r}, {run_tag!r}")
    return posixpath.join(service_root, "replaced", f"{copy_id}-{run_tag}")
