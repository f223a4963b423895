"""Accounts a rebuild recreates on a standby, and the expiring temporary logins it hands out.

Which accounts may be created is the merge rule of ``accounts.py``; this module turns the
decision into commands, and decides when a temporary login is due to expire. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from hotspare.planning.accounts import TEMPORARY_PREFIX, Account, Group
from hotspare.planning.shell_programs import SET_HASHES, PlanRefused


def account_commands(
    wanted_groups: Sequence[Group],
    wanted_accounts: Sequence[Account],
    present_groups: Sequence[Group],
    present_accounts: Sequence[Account],
) -> tuple[list[list[str]], list[str]]:
    """Commands that recreate the snapshot's groups and accounts on a standby, and sentences.

    Idempotent: entries already there with the same id are skipped; an entry whose name or id
    is taken by something else is a conflict that refuses the whole step (PlanRefused).
    """
    commands: list[list[str]] = []
    sentences: list[str] = []
    conflicts: list[str] = []
    groups_by_name = {group.name: group for group in present_groups}
    groups_by_id = {group.gid: group for group in present_groups}
    for group in wanted_groups:
        have = groups_by_name.get(group.name)
        if have and have.gid == group.gid:
            sentences.append(f"group {group.name} ({group.gid}) already exists")
        elif have:
            conflicts.append(f"group {group.name} exists with gid {have.gid}, the snapshot has {group.gid}")
        elif group.gid in groups_by_id:
            conflicts.append(f"gid {group.gid} of group {group.name} is taken by {groups_by_id[group.gid].name}")
        else:
            commands.append(["groupadd", "--gid", str(group.gid), group.name])
            sentences.append(f"group {group.name} ({group.gid}) created")
    accounts_by_name = {account.name: account for account in present_accounts}
    accounts_by_id = {account.uid: account for account in present_accounts}
    for account in wanted_accounts:
        have = accounts_by_name.get(account.name)
        if have and have.uid == account.uid:
            sentences.append(f"account {account.name} ({account.uid}) already exists")
        elif have:
            conflicts.append(f"account {account.name} exists with uid {have.uid}, the snapshot has {account.uid}")
        elif account.uid in accounts_by_id:
            conflicts.append(f"uid {account.uid} of {account.name} is taken by {accounts_by_id[account.uid].name}")
        else:
            commands.append(
                [
                    "useradd",
                    "--uid",
                    str(account.uid),
                    "--gid",
                    str(account.gid),
                    "--home-dir",
                    account.home,
                    "--create-home",
                    "--shell",
                    account.shell,
                    "--comment",
                    account.gecos,
                    account.name,
                ]
            )
            sentences.append(f"account {account.name} ({account.uid}) created")
    for group in wanted_groups:
        if group.members:
            commands.append(["gpasswd", "--members", ",".join(group.members), group.name])
    if conflicts:
        raise PlanRefused(conflicts)
    return commands, sentences


def set_password_hashes(shadow_file: str, names: Sequence[str]) -> list[str]:
    """Give the named restored accounts (those the account merge accepted) their password
    hashes from the snapshot's shadow file, read on the host itself: hashes never travel."""
    return ["sh", "-c", SET_HASHES, "sh", shadow_file, *names]


@dataclass(frozen=True)
class TemporaryAccount:
    """A login for the users of ``for_user``: same uid and group, own password, fixed expiry."""

    name: str
    for_user: str
    uid: int
    gid: int
    home: str
    shell: str
    expires_at: datetime

    @property
    def expire_date(self) -> str:
        """OS-level expiry (whole days): the day after ``expires_at`` so it is never early.

        The scheduled ``expire_temporary_accounts`` flow disables the account at the exact time.
        """
        return (self.expires_at + timedelta(days=1)).date().isoformat()


def temporary_accounts(
    accounts: Sequence[Account], created_at: datetime, hours: float, only: Sequence[str] | None = None
) -> list[TemporaryAccount]:
    """One temporary login per service account (or per name in ``only``)."""
    if hours <= 0:
        raise PlanRefused([f"temporary accounts need a positive lifetime, got {hours} h"])
    chosen = [account for account in accounts if only is None or account.name in only]
    expires = created_at + timedelta(hours=hours)
    return [
        TemporaryAccount(
            (TEMPORARY_PREFIX + account.name)[:32], account.name, account.uid, account.gid, account.home, account.shell, expires
        )
        for account in chosen
    ]


def temporary_account_commands(account: TemporaryAccount, exists: bool) -> list[list[str]]:
    """Create (or renew) one temporary login. Non-unique uid (``-o``): it reaches exactly the
    files of ``for_user``, and disabling it never touches the real account."""
    if exists:
        return [["usermod", "--unlock", "--expiredate", account.expire_date, account.name]]
    return [
        [
            "useradd",
            "--non-unique",
            "--uid",
            str(account.uid),
            "--gid",
            str(account.gid),
            "--home-dir",
            account.home,
            "--no-create-home",
            "--shell",
            account.shell,
            "--expiredate",
            account.expire_date,
            "--comment",
            f"hotspare temporary login for {account.for_user}",
            account.name,
        ],
        ["chage", "--expiredate", account.expire_date, account.name],
    ]


def disable_account_commands(user_name: str) -> list[list[str]]:
    """Lock the password and expire the account (both, so neither alone must hold)."""
    return [["usermod", "--lock", "--expiredate", "1", user_name], ["chage", "--expiredate", "0", user_name]]


def due_for_expiry(rows: Iterable, now: datetime) -> list:
    """Temporary account rows whose time is up and that are not disabled yet."""
    return [row for row in rows if row.disabled_at is None and _utc(row.expires_at) <= now]


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def expire_day_count(moment: datetime) -> int:
    """Days since 1970 of ``moment``, rounded up (shadow's expiry unit)."""
    return math.ceil(moment.timestamp() / 86400)
