"""System accounts: parse passwd/group/shadow/gshadow and merge a service's accounts into a host.

Pure: no network, no Prefect, no clock. One rule serves every place that writes accounts from
another machine's files — replication (copy → mirror), rebuild (snapshot → standby) and the
temporary logins of a rebuild:

    the merge only ever touches the service's own accounts: the names declared in the fleet
    file (``accounts.users``) or, when none are declared, the entries in its UID range.

The source is production (or its backup), which may be compromised. So a source entry is
refused — left out, the target's own entry kept, one sentence naming it — when it has UID 0 or
GID 0, carries a system account name, exists on the target with a UID outside the range, has a
UID or primary GID outside the range, shares its name or UID with another source entry, takes a
UID the target gives to an account the merge does not manage, or is malformed. Groups follow
the same rule with GIDs; a group's members are kept only when they are accepted users or
accounts of the target. shadow/gshadow entries follow the accepted passwd/group names; one for
a name without a passwd/group entry is refused. Target entries outside the range are never
removed or changed.

Temporary logins (``tmp-<user>``, same UID as their user) belong to the host that issued them:
never replicated, never removed by a merge, and not counted as a UID clash.

Only the service's lines travel (``service_accounts``): the orchestrator reads production's four
files over its own login and keeps the lines of the service's accounts (the declared names, or
the UID range when none are declared) that pass the source's own checks above; only those lines
are written into the copy (``<tree>/etc/passwd`` …) and merged. Root's hash, a system account's
or another service's never reaches the mirror, whatever production's files say.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

ACCOUNT_FILES = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow")
PASSWD, GROUP, SHADOW, GSHADOW = ACCOUNT_FILES
TEMPORARY_PREFIX = "tmp-"
# What useradd accepts on Debian (NAME_REGEX relaxed), at most 32 characters; never '+'/'-'
# (NIS compatibility lines) nor anything a log line could be forged with.
NAME_PATTERN = re.compile(r"[a-z_][a-z0-9_.-]{0,30}\$?|[a-z_]")
NUMBER_PATTERN = re.compile(r"[0-9]{1,10}")
# Names of system accounts and groups on common distributions: never replicated, whatever
# their UID (a service's range could be set low, and a target may lack the account today).
SYSTEM_NAMES = frozenset(
    {
        "root",
        "daemon",
        "bin",
        "sys",
        "sync",
        "games",
        "man",
        "lp",
        "mail",
        "news",
        "uucp",
        "proxy",
        "www-data",
        "backup",
        "list",
        "irc",
        "gnats",
        "nobody",
        "nogroup",
        "_apt",
        "sshd",
        "_ssh",
        "messagebus",
        "polkitd",
        "postfix",
        "postdrop",
        "bind",
        "ntp",
        "chrony",
        "uuidd",
        "tss",
        "tcpdump",
        "adm",
        "tty",
        "disk",
        "kmem",
        "dialout",
        "fax",
        "voice",
        "cdrom",
        "floppy",
        "tape",
        "sudo",
        "wheel",
        "audio",
        "dip",
        "operator",
        "src",
        "shadow",
        "utmp",
        "video",
        "sasl",
        "plugdev",
        "staff",
        "users",
        "input",
        "kvm",
        "render",
        "sgx",
        "crontab",
        "netdev",
        "lxd",
        "docker",
        "ssl-cert",
        "systemd-journal",
        "systemd-network",
        "systemd-resolve",
        "systemd-timesync",
        "systemd-coredump",
        "admin",
        "toor",
    }
)
# Debian's SYS_UID_MAX + 1: accounts below are the host's own (www-data may join a service's group).
SYSTEM_UID_LIMIT = 1000
FIELDS = {PASSWD: 7, GROUP: 4, SHADOW: 9, GSHADOW: 4}


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    gecos: str
    home: str
    shell: str


@dataclass(frozen=True)
class Group:
    name: str
    gid: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class Entry:
    """One well-formed line of an account file; ``number`` (id) only for passwd and group."""

    name: str
    fields: tuple[str, ...]
    number: int | None = None
    primary_group: int | None = None  # passwd only
    members: tuple[str, ...] = ()  # group only

    @property
    def line(self) -> str:
        return ":".join(self.fields)


@dataclass(frozen=True)
class ParsedFile:
    entries: tuple[Entry, ...]
    lines: tuple[tuple[str, Entry | None], ...]  # every line in order, with its entry if well formed
    malformed: tuple[str, ...]  # sentences, one per malformed line
    malformed_names: frozenset[str]  # valid names seen on malformed lines


def parse_file(path: str, text: str) -> ParsedFile:
    """Parse one account file; malformed lines are named by number, never quoted (hashes)."""
    entries, lines, malformed, names = [], [], [], set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        entry, problem = _entry(path, line)
        lines.append((line, entry))
        if entry:
            entries.append(entry)
            continue
        name = line.split(":", 1)[0]
        named = f" ({name})" if NAME_PATTERN.fullmatch(name) else ""
        if named:
            names.add(name)
        malformed.append(f"{path} line {number}{named} is malformed: {problem}")
    return ParsedFile(tuple(entries), tuple(lines), tuple(malformed), frozenset(names))


def _entry(path: str, line: str) -> tuple[Entry | None, str]:
    fields = tuple(line.split(":"))
    if len(fields) != FIELDS[path]:
        return None, f"{len(fields)} fields instead of {FIELDS[path]}"
    if not NAME_PATTERN.fullmatch(fields[0]):
        return None, "not a valid account name"
    if path == PASSWD:
        if not (NUMBER_PATTERN.fullmatch(fields[2]) and NUMBER_PATTERN.fullmatch(fields[3])):
            return None, "UID and GID must be numbers"
        if not fields[5].startswith("/") or (fields[6] and not fields[6].startswith("/")):
            return None, "home and shell must be absolute paths"
        return Entry(fields[0], fields, int(fields[2]), primary_group=int(fields[3])), ""
    if path == GROUP:
        if not NUMBER_PATTERN.fullmatch(fields[2]):
            return None, "GID must be a number"
        members = tuple(member for member in fields[3].split(",") if member)
        if not all(NAME_PATTERN.fullmatch(member) for member in members):
            return None, "a member is not a valid account name"
        return Entry(fields[0], fields, int(fields[2]), members=members), ""
    return Entry(fields[0], fields), ""


def parse_passwd(text: str) -> list[Account]:
    """The well-formed passwd entries (malformed lines are skipped)."""
    return [
        Account(e.name, e.number, e.primary_group, e.fields[4], e.fields[5], e.fields[6])
        for e in parse_file(PASSWD, text).entries
    ]


def parse_group(text: str) -> list[Group]:
    """The well-formed group entries (malformed lines are skipped)."""
    return [Group(e.name, e.number, e.members) for e in parse_file(GROUP, text).entries]


def placeholder_shadow(names: Iterable[str], path: str = SHADOW) -> str:
    """shadow/gshadow text with the given names and no secrets, for callers that keep password
    hashes on the host (a rebuild sets them there) but still want the merge's name checks."""
    return "".join(":".join([name, "*"] + [""] * (FIELDS[path] - 2)) + "\n" for name in names)


# ----- what travels -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceAccounts:
    """The service's own lines of production's account files (path -> text), and why others
    were left out (sentences that name entries, never hashes)."""

    files: Mapping[str, str]
    users: tuple[str, ...]
    groups: tuple[str, ...]
    refused: tuple[str, ...]


def service_accounts(source: Mapping[str, str], uid_min: int, uid_max: int, users: Sequence[str] = ()) -> ServiceAccounts:
    """Keep only the service's lines of ``source`` (production's four files, path -> text).

    Candidates are the declared names (``users``), or the entries in ``uid_min..uid_max`` when
    none are declared; the source-only rules of the merge apply (UID/GID 0, system names,
    duplicates, out of range, malformed), so a refused entry's hash is dropped here, before
    anything is written anywhere. The checks that need the target (a name or UID taken there)
    are the merge's, later, on these lines only. Every other line, root's included, is dropped
    without a word: it was never the service's.
    """
    parsed = {path: parse_file(path, source.get(path, "")) for path in ACCOUNT_FILES}
    rule = _Rule(uid_min, uid_max, frozenset(users))
    nobody = {path: parse_file(path, "") for path in ACCOUNT_FILES}
    accepted_users, _, user_sentences = rule.decide(
        "account", "UID", parsed[PASSWD], parsed[SHADOW], nobody[PASSWD], declared_names=True
    )
    accepted_groups, _, group_sentences = rule.decide(
        "group", "GID", parsed[GROUP], parsed[GSHADOW], nobody[GROUP], declared_names=False
    )
    refused = [f"{sentence}; left out" for path in ACCOUNT_FILES for sentence in parsed[path].malformed]
    refused += user_sentences + group_sentences

    def lines(path: str, names: Mapping[str, Entry]) -> str:
        kept = [entry.line for entry in parsed[path].entries if entry.name in names]
        return "".join(line + "\n" for line in kept)

    files = {
        PASSWD: lines(PASSWD, accepted_users),
        GROUP: lines(GROUP, accepted_groups),
        SHADOW: lines(SHADOW, accepted_users),
        GSHADOW: lines(GSHADOW, accepted_groups),
    }
    return ServiceAccounts(files, tuple(sorted(accepted_users)), tuple(sorted(accepted_groups)), tuple(refused))


# ----- the merge -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountMerge:
    """The target's account files after the merge, what was accepted and what was refused."""

    files: Mapping[str, str]
    users: tuple[str, ...]
    groups: tuple[str, ...]
    refused: tuple[str, ...]  # one sentence per refused entry; the caller logs them as warnings

    def changed(self, current: Mapping[str, str]) -> list[str]:
        return [path for path in ACCOUNT_FILES if self.files.get(path, "") != current.get(path, "")]

    def accepted_accounts(self) -> list[Account]:
        return [account for account in parse_passwd(self.files[PASSWD]) if account.name in self.users]

    def accepted_groups(self) -> list[Group]:
        return [group for group in parse_group(self.files[GROUP]) if group.name in self.groups]

    def user_lines(self, name: str) -> tuple[str | None, str | None]:
        """(passwd line, shadow line) of ``name`` in the merged files."""
        return user_lines(self.files, name)


def locked_passwords(shadow_text: str) -> str:
    """``shadow_text`` with every password locked: ``!`` before the hash (what ``usermod -L``
    writes), and an empty password (no password at all) becomes ``!``; ``*`` and hashes already
    locked stay. The service's accounts must exist on its mirror (files keep their owners), but
    while production serves they open nothing there: production's root can set any hash."""
    lines = []
    for line in shadow_text.splitlines():
        fields = line.split(":")
        if len(fields) > 1 and not fields[1].startswith(("!", "*")):
            fields[1] = "!" + fields[1]
        lines.append(":".join(fields))
    return "\n".join(lines) + ("\n" if shadow_text.endswith("\n") else "")


def user_lines(files: Mapping[str, str], name: str) -> tuple[str | None, str | None]:
    def line(path: str) -> str | None:
        return next((e.line for e in parse_file(path, files.get(path, "")).entries if e.name == name), None)

    return line(PASSWD), line(SHADOW)


def merge_accounts(
    current: Mapping[str, str], source: Mapping[str, str], uid_min: int, uid_max: int, users: Sequence[str] = ()
) -> AccountMerge:
    """Merge the service's accounts from ``source`` into ``current`` (both: path -> text of the
    four account files; a missing one counts as empty). See the module docstring for the rule.

    Idempotent: merging the result with the same source changes nothing.
    """
    parsed_source = {path: parse_file(path, source.get(path, "")) for path in ACCOUNT_FILES}
    parsed_current = {path: parse_file(path, current.get(path, "")) for path in ACCOUNT_FILES}
    declared = frozenset(users)
    refused = [f"{sentence}; ignored" for path in ACCOUNT_FILES for sentence in parsed_source[path].malformed]
    rule = _Rule(uid_min, uid_max, declared)
    # Members a group of the service may list: its own accepted users and the target's system
    # accounts or its own range, never an account of another service on a shared mirror.
    target_users = {
        entry.name
        for entry in parsed_current[PASSWD].entries
        if entry.number < SYSTEM_UID_LIMIT or uid_min <= entry.number <= uid_max
    }
    accepted_users, kept_users, user_sentences = rule.decide(
        "account", "UID", parsed_source[PASSWD], parsed_source[SHADOW], parsed_current[PASSWD], declared_names=True
    )
    accepted_groups, kept_groups, group_sentences = rule.decide(
        "group", "GID", parsed_source[GROUP], parsed_source[GSHADOW], parsed_current[GROUP], declared_names=False
    )
    refused += user_sentences + group_sentences
    allowed_members = target_users | set(accepted_users)
    for name, entry in list(accepted_groups.items()):
        dropped = [member for member in entry.members if member not in allowed_members]
        if dropped:
            members = tuple(member for member in entry.members if member in allowed_members)
            fields = (*entry.fields[:3], ",".join(members))
            accepted_groups[name] = Entry(name, fields, entry.number, members=members)
            refused.append(
                f"{GROUP}: group {name}: member(s) {', '.join(dropped)} dropped: neither an account "
                "of the service nor a system account of the target"
            )
    refused += _orphans(SHADOW, parsed_source[SHADOW], {e.name for e in parsed_source[PASSWD].entries})
    refused += _orphans(GSHADOW, parsed_source[GSHADOW], {e.name for e in parsed_source[GROUP].entries})
    managed_users = rule.managed(parsed_current[PASSWD], declared_names=True)
    managed_groups = rule.managed(parsed_current[GROUP], declared_names=False)
    files = {
        PASSWD: _rewrite(parsed_current[PASSWD], accepted_users, managed_users, kept_users),
        GROUP: _rewrite(parsed_current[GROUP], accepted_groups, managed_groups, kept_groups),
        SHADOW: _rewrite(
            parsed_current[SHADOW],
            _companions(SHADOW, accepted_users, parsed_source[SHADOW], parsed_current[SHADOW]),
            managed_users,
            kept_users,
        ),
        GSHADOW: _rewrite(
            parsed_current[GSHADOW],
            _companions(GSHADOW, accepted_groups, parsed_source[GSHADOW], parsed_current[GSHADOW]),
            managed_groups,
            kept_groups,
        ),
    }
    return AccountMerge(files, tuple(sorted(accepted_users)), tuple(sorted(accepted_groups)), tuple(refused))


@dataclass(frozen=True)
class _Rule:
    uid_min: int
    uid_max: int
    declared: frozenset[str]

    def in_range(self, number: int) -> bool:
        return self.uid_min <= number <= self.uid_max

    def is_service_entry(self, entry: Entry, declared_names: bool) -> bool:
        """A target entry the merge may replace or remove: the service's, and in its range."""
        if entry.name.startswith(TEMPORARY_PREFIX) or not self.in_range(entry.number):
            return False
        return not (declared_names and self.declared) or entry.name in self.declared

    def managed(self, target: ParsedFile, declared_names: bool) -> set[str]:
        return {entry.name for entry in target.entries if self.is_service_entry(entry, declared_names)}

    def decide(
        self, noun: str, id_name: str, source: ParsedFile, companion: ParsedFile, target: ParsedFile, declared_names: bool
    ) -> tuple[dict[str, Entry], set[str], list[str]]:
        """(accepted entries by name, names whose target entry stays as it is, sentences)."""
        path = PASSWD if noun == "account" else GROUP
        declared = self.declared if declared_names else frozenset()
        names = Counter(entry.name for entry in source.entries)
        numbers = Counter(entry.number for entry in source.entries if not entry.name.startswith(TEMPORARY_PREFIX))
        companions = Counter(entry.name for entry in companion.entries)
        outside_on_target = {}  # name -> its id on the target, when outside the range
        for entry in target.entries:
            if not self.in_range(entry.number):
                outside_on_target.setdefault(entry.name, entry.number)
        foreign_numbers = {
            entry.number: entry.name
            for entry in target.entries
            if not self.is_service_entry(entry, declared_names) and not entry.name.startswith(TEMPORARY_PREFIX)
        }
        accepted, kept, sentences = {}, set(source.malformed_names), []
        for entry in source.entries:
            if entry.name.startswith(TEMPORARY_PREFIX):
                continue  # temporary logins stay on the host that issued them
            candidate = entry.name in declared if declared else self.in_range(entry.number)
            privileged = entry.name != "root" and (entry.number == 0 or entry.primary_group == 0)
            undeclared = bool(declared) and self.in_range(entry.number) and entry.name not in declared
            if not (candidate or privileged or undeclared):
                continue  # the target's own business (system accounts, other services)
            reasons = []
            if entry.number == 0:
                reasons.append(f"{id_name} 0 is root's")
            if entry.primary_group == 0:
                reasons.append("GID 0 is root's group")
            if undeclared:
                reasons.append("not one of the service's declared users")
            if not self.in_range(entry.number):
                reasons.append(f"{id_name} outside the service's range {self.uid_min}-{self.uid_max}")
            if entry.primary_group is not None and entry.primary_group != 0 and not self.in_range(entry.primary_group):
                reasons.append(f"primary GID {entry.primary_group} outside the range {self.uid_min}-{self.uid_max}")
            if entry.name in SYSTEM_NAMES:
                reasons.append("a system account name")
            if entry.name in outside_on_target:
                reasons.append(f"exists on the target with {id_name} {outside_on_target[entry.name]}, outside the range")
            if names[entry.name] > 1:
                reasons.append(f"the name appears {names[entry.name]} times in the source {path}")
            if companions[entry.name] > 1:
                reasons.append(
                    f"the name appears {companions[entry.name]} times in the source {SHADOW if path == PASSWD else GSHADOW}"
                )
            if numbers[entry.number] > 1:
                reasons.append(f"{id_name} {entry.number} is shared by {numbers[entry.number]} source entries")
            owner = foreign_numbers.get(entry.number)
            if owner is not None and owner != entry.name:
                reasons.append(f"{id_name} {entry.number} belongs to {owner} on the target")
            if reasons:
                kept.add(entry.name)
                sentences.append(f"{path}: refused {noun} {entry.name} ({id_name} {entry.number}): {'; '.join(reasons)}")
            else:
                accepted[entry.name] = entry
        return accepted, kept, sentences


def _orphans(path: str, parsed: ParsedFile, known: set[str]) -> list[str]:
    owner = PASSWD if path == SHADOW else GROUP
    return [
        f"{path}: refused the entry for {entry.name}: no entry of that name in the source {owner}"
        for entry in parsed.entries
        if entry.name not in known
    ]


def _companions(path: str, accepted: Mapping[str, Entry], source: ParsedFile, target: ParsedFile) -> dict[str, Entry]:
    """shadow/gshadow entries of the accepted names: the source's, else the target's, else locked."""
    from_source = {entry.name: entry for entry in source.entries}
    from_target = {entry.name: entry for entry in target.entries}
    result = {}
    for name in accepted:
        entry = from_source.get(name) or from_target.get(name)
        result[name] = entry or Entry(name, tuple([name, "!"] + [""] * (FIELDS[path] - 2)))
    return result


def _rewrite(target: ParsedFile, accepted: Mapping[str, Entry], managed: set[str], kept: set[str]) -> str:
    """The target's lines in order: accepted names replaced in place, the service's names that
    production no longer has removed, everything else (and refused names) untouched; new
    accepted entries appended."""
    out, written = [], set()
    for line, entry in target.lines:
        name = entry.name if entry else None
        if name in accepted:
            if name not in written:
                out.append(accepted[name].line)
                written.add(name)
        elif name in managed and name not in kept:
            continue
        else:
            out.append(line)
    out += [entry.line for name, entry in accepted.items() if name not in written]
    return "\n".join(out) + "\n" if out else ""
