"""The account merge (hotspare/planning/accounts.py) on golden passwd/group/shadow/gshadow texts.

The service's UID range is 2000-2999; the source is production (maybe compromised), the
target the mirror (or a standby being rebuilt).
"""

from __future__ import annotations

import pytest

from hotspare.planning import accounts as plan
from hotspare.planning.accounts import GROUP, GSHADOW, PASSWD, SHADOW

LOW, HIGH = 2000, 2999

MIRROR_FILES = {
    PASSWD: (
        "root:x:0:0:root:/root:/bin/bash\n"
        "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
        "sshd:x:105:65534::/run/sshd:/usr/sbin/nologin\n"
        "alice:x:2001:2001::/home/alice:/bin/bash\n"
        "olduser:x:2002:2002::/home/olduser:/bin/bash\n"
        "other:x:3001:3001:another service:/home/other:/bin/sh\n"
    ),
    GROUP: "root:x:0:\ndaemon:x:1:\nsudo:x:27:\nalice:x:2001:\nolduser:x:2002:\nother:x:3001:\n",
    SHADOW: (
        "root:$y$mirror-root:19000:0:99999:7:::\n"
        "daemon:*:19000:0:99999:7:::\n"
        "sshd:!:19000::::::\n"
        "alice:$y$alice-OLD:19000:0:99999:7:::\n"
        "olduser:$y$olduser:19000:0:99999:7:::\n"
        "other:$y$other:19000:0:99999:7:::\n"
    ),
    GSHADOW: "root:*::\ndaemon:*::\nsudo:*::\nalice:!::\nolduser:!::\nother:!::\n",
}
PRODUCTION_FILES = {
    PASSWD: (
        "root:x:0:0:root:/root:/bin/bash\n"
        "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
        "postfix:x:107:113::/var/spool/postfix:/usr/sbin/nologin\n"
        "alice:x:2001:2001::/home/alice:/bin/bash\n"
        "bob:x:2003:2003::/home/bob:/bin/bash\n"
    ),
    GROUP: "root:x:0:\ndaemon:x:1:\nsudo:x:27:\npostfix:x:113:\nalice:x:2001:\nbob:x:2003:alice,bob\n",
    SHADOW: (
        "root:$y$production-root:19000:0:99999:7:::\n"
        "daemon:*:19000:0:99999:7:::\n"
        "postfix:*:19000::::::\n"
        "alice:$y$alice-NEW:19100:0:99999:7:::\n"
        "bob:$y$bob:19100:0:99999:7:::\n"
    ),
    GSHADOW: "root:*::\ndaemon:*::\nsudo:*::\npostfix:!::\nalice:!::\nbob:!::\n",
}
MERGED = {
    PASSWD: (
        "root:x:0:0:root:/root:/bin/bash\n"
        "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
        "sshd:x:105:65534::/run/sshd:/usr/sbin/nologin\n"
        "alice:x:2001:2001::/home/alice:/bin/bash\n"
        "other:x:3001:3001:another service:/home/other:/bin/sh\n"
        "bob:x:2003:2003::/home/bob:/bin/bash\n"
    ),
    GROUP: "root:x:0:\ndaemon:x:1:\nsudo:x:27:\nalice:x:2001:\nother:x:3001:\nbob:x:2003:alice,bob\n",
    SHADOW: (
        "root:$y$mirror-root:19000:0:99999:7:::\n"
        "daemon:*:19000:0:99999:7:::\n"
        "sshd:!:19000::::::\n"
        "alice:$y$alice-NEW:19100:0:99999:7:::\n"
        "other:$y$other:19000:0:99999:7:::\n"
        "bob:$y$bob:19100:0:99999:7:::\n"
    ),
    GSHADOW: "root:*::\ndaemon:*::\nsudo:*::\nalice:!::\nother:!::\nbob:!::\n",
}


def merge(source_changes: dict[str, str] | None = None, current: dict[str, str] | None = None, users=()):
    """Production's golden files with text appended to some of them, merged into the mirror's."""
    source = dict(PRODUCTION_FILES)
    for path, extra in (source_changes or {}).items():
        source[path] += extra
    return plan.merge_accounts(current or MIRROR_FILES, source, LOW, HIGH, users)


def refusal(result, *words: str) -> str:
    """The one refusal sentence that contains every word."""
    matches = [sentence for sentence in result.refused if all(word in sentence for word in words)]
    assert len(matches) == 1, (words, result.refused)
    return matches[0]


def unchanged_except_service(result) -> None:
    """Everything the attack must not reach: root's and daemon's entries, the sudo group."""
    assert result.files[PASSWD].splitlines()[:2] == MIRROR_FILES[PASSWD].splitlines()[:2]
    assert "root:$y$mirror-root:" in result.files[SHADOW] and "production-root" not in result.files[SHADOW]
    assert "sudo:x:27:\n" in result.files[GROUP]
    assert [line for line in result.files[PASSWD].splitlines() if line.split(":")[2] == "0"] == [
        "root:x:0:0:root:/root:/bin/bash"
    ]


# ----- the normal case -------------------------------------------------------------------------------


def test_normal_merge_takes_the_service_range_and_nothing_else():
    result = merge()
    assert dict(result.files) == MERGED
    assert result.users == ("alice", "bob") and result.groups == ("alice", "bob")
    assert result.refused == ()
    assert "olduser" not in "".join(result.files.values())  # removed on production: gone everywhere
    assert "postfix" not in "".join(result.files.values())  # production's system account is not copied
    assert "other:x:3001" in result.files[PASSWD]  # another service's range untouched
    assert result.changed(MIRROR_FILES) == [PASSWD, GROUP, SHADOW, GSHADOW]


def test_merge_is_idempotent():
    once = merge()
    again = plan.merge_accounts(once.files, PRODUCTION_FILES, LOW, HIGH)
    assert dict(again.files) == dict(once.files) and again.changed(once.files) == []
    attacked = merge({PASSWD: "root2:x:0:0::/root:/bin/sh\nroot:x:2500:2500::/root:/bin/sh\n"})
    attacked_again = plan.merge_accounts(
        attacked.files,
        {**PRODUCTION_FILES, PASSWD: PRODUCTION_FILES[PASSWD] + "root2:x:0:0::/root:/bin/sh\nroot:x:2500:2500::/root:/bin/sh\n"},
        LOW,
        HIGH,
    )
    assert dict(attacked_again.files) == dict(attacked.files) and attacked_again.refused == attacked.refused


def test_declared_users_limit_the_merge_to_those_names():
    extra = {PASSWD: "carol:x:2004:2004::/home/carol:/bin/sh\n", SHADOW: "carol:$y$carol:19100:0:99999:7:::\n"}
    result = merge(extra, users=("alice", "bob"))
    assert result.users == ("alice", "bob")
    assert "carol" not in result.files[PASSWD] and "carol" not in result.files[SHADOW]
    assert "not one of the service's declared users" in refusal(result, "carol")
    # olduser is in the range but not declared: the merge does not touch it
    assert "olduser:x:2002" in result.files[PASSWD] and "olduser:$y$olduser" in result.files[SHADOW]


def test_a_declared_user_outside_the_range_is_refused():
    result = merge({PASSWD: "dave:x:4000:2003::/home/dave:/bin/sh\n"}, users=("alice", "bob", "dave"))
    assert "outside the service's range 2000-2999" in refusal(result, "dave", "UID 4000")
    assert "dave" not in result.files[PASSWD]


# ----- each refusal ---------------------------------------------------------------------------------


def test_uid_0_entry_is_refused():
    result = merge({PASSWD: "root2:x:0:0:backdoor:/root:/bin/bash\n", SHADOW: "root2:$y$evil:19100:0:99999:7:::\n"})
    sentence = refusal(result, "/etc/passwd", "root2")
    assert "UID 0 is root's" in sentence and "GID 0" in sentence
    assert "root2" not in result.files[PASSWD] and "evil" not in result.files[SHADOW]
    assert "$y$evil" not in " ".join(result.refused)  # a sentence never carries a hash
    unchanged_except_service(result)


def test_gid_0_in_range_is_refused():
    result = merge({PASSWD: "eve:x:2500:0::/home/eve:/bin/sh\n", SHADOW: "eve:$y$eve:19100:0:99999:7:::\n"})
    assert "GID 0 is root's group" in refusal(result, "eve")
    assert "eve" not in "".join(result.files.values())


def test_primary_group_outside_the_range_is_refused():
    result = merge({PASSWD: "eve:x:2500:27::/home/eve:/bin/sh\n"})  # 27: sudo
    assert "primary GID 27 outside the range" in refusal(result, "eve")
    assert "eve" not in result.files[PASSWD]


def test_system_account_name_in_range_is_refused():
    extra = {PASSWD: "root:x:2500:2500::/root:/bin/sh\n", SHADOW: "root:$y$evil-root:19100:0:99999:7:::\n"}
    result = merge(extra)
    sentence = refusal(result, "/etc/passwd", "root (UID 2500)")
    assert "a system account name" in sentence
    assert "exists on the target with UID 0" in sentence
    assert "appears 2 times in the source /etc/passwd" in sentence
    assert "appears 2 times in the source /etc/shadow" in sentence
    assert "evil-root" not in result.files[SHADOW]
    unchanged_except_service(result)
    assert result.users == ("alice", "bob")  # the legitimate users still merged


def test_system_name_absent_on_the_target_is_refused():
    result = merge({PASSWD: "www-data:x:2600:2600::/var/www:/bin/sh\n"})
    assert "a system account name" in refusal(result, "www-data")


def test_name_existing_on_the_target_with_another_uid_is_refused():
    result = merge({PASSWD: "other:x:2700:2700::/home/other:/bin/sh\n", SHADOW: "other:$y$takeover:1:0:99999:7:::\n"})
    assert "exists on the target with UID 3001, outside the range" in refusal(result, "other")
    assert "other:x:3001:3001:another service" in result.files[PASSWD]
    assert "other:$y$other:" in result.files[SHADOW] and "takeover" not in result.files[SHADOW]


def test_duplicate_names_in_the_source_are_refused_and_the_target_entry_kept():
    result = merge({PASSWD: "alice:x:2009:2009::/home/alice:/bin/bash\n"})
    assert len([s for s in result.refused if "alice" in s]) == 2
    assert "alice:x:2001:2001" in result.files[PASSWD]  # the mirror's own entry stays
    assert "alice:$y$alice-OLD" in result.files[SHADOW]  # and so does its hash
    assert result.users == ("bob",)


def test_duplicate_uids_in_the_source_are_refused():
    result = merge({PASSWD: "mallory:x:2001:2001::/home/alice:/bin/sh\n", SHADOW: "mallory:$y$m:19100:0:99999:7:::\n"})
    assert "UID 2001 is shared by 2 source entries" in refusal(result, "mallory")
    assert "UID 2001 is shared by 2 source entries" in refusal(result, "refused account alice")
    assert "mallory" not in result.files[PASSWD]
    assert "alice:x:2001:2001" in result.files[PASSWD] and "alice-OLD" in result.files[SHADOW]


def test_uid_taken_on_the_target_by_an_unmanaged_account_is_refused():
    current = {**MIRROR_FILES, PASSWD: MIRROR_FILES[PASSWD] + "guest:x:2010:2010::/home/guest:/bin/sh\n"}
    result = plan.merge_accounts(
        current,
        {**PRODUCTION_FILES, PASSWD: PRODUCTION_FILES[PASSWD] + "frank:x:2010:2003::/home/frank:/bin/sh\n"},
        LOW,
        HIGH,
        ("alice", "bob", "frank"),
    )
    assert "UID 2010 belongs to guest on the target" in refusal(result, "frank")
    assert "guest:x:2010" in result.files[PASSWD] and "frank" not in result.files[PASSWD]


@pytest.mark.parametrize(
    "line",
    [
        "broken-line",
        "eve:x:2500:2500:/home/eve:/bin/sh",  # 6 fields
        "eve:x:25a0:2500::/home/eve:/bin/sh",
        "eve:x:2500:2500::home/eve:/bin/sh",
        "+::::::",
        "Eve Smith:x:2500:2500::/home/eve:/bin/sh",
    ],
)
def test_malformed_lines_are_refused_by_number(line):
    result = merge({PASSWD: line + "\n"})
    assert "/etc/passwd line 6" in refusal(result, "malformed")
    assert line not in result.files[PASSWD]
    assert result.users == ("alice", "bob")


def test_a_malformed_line_of_a_service_user_keeps_its_target_entry():
    result = merge(current=MIRROR_FILES, source_changes={PASSWD: "olduser:x:2002\n"})
    assert "(olduser)" in refusal(result, "malformed")
    assert "olduser:x:2002:2002" in result.files[PASSWD]  # not removed on the strength of a broken line


def test_shadow_entry_without_passwd_entry_is_refused():
    result = merge({SHADOW: "ghost:$y$ghost:19100:0:99999:7:::\n", GSHADOW: "ghosts:!::\n"})
    assert "no entry of that name in the source /etc/passwd" in refusal(result, "/etc/shadow", "ghost")
    assert "no entry of that name in the source /etc/group" in refusal(result, "/etc/gshadow", "ghosts")
    assert "ghost" not in result.files[SHADOW] and "ghosts" not in result.files[GSHADOW]


def test_changed_system_account_hash_never_reaches_the_target():
    source = {**PRODUCTION_FILES, SHADOW: PRODUCTION_FILES[SHADOW].replace("daemon:*:", "daemon:$y$planted:")}
    result = plan.merge_accounts(MIRROR_FILES, source, LOW, HIGH)
    assert "daemon:*:19000" in result.files[SHADOW] and "planted" not in result.files[SHADOW]


def test_missing_shadow_entry_gives_a_locked_one():
    result = merge({PASSWD: "gina:x:2011:2011::/home/gina:/bin/sh\n"})
    assert "gina:!:::::::\n" in result.files[SHADOW]


# ----- groups ---------------------------------------------------------------------------------------


def test_group_rules_follow_the_user_rules_with_gids():
    extra = {GROUP: "sudo:x:2500:alice\nwheel2:x:0:bob\nshared:x:2600:alice,bob,www-data,intruder\n"}
    result = merge(extra)
    sudo = refusal(result, "/etc/group", "sudo (GID 2500)")
    assert "a system account name" in sudo and "exists on the target with GID 27" in sudo
    assert "GID 0 is root's" in refusal(result, "wheel2")
    assert "sudo:x:27:\n" in result.files[GROUP] and "wheel2" not in result.files[GROUP]
    # members: accepted users and the target's own accounts only (www-data is not on this mirror)
    assert "shared:x:2600:alice,bob\n" in result.files[GROUP]
    assert "intruder" in refusal(result, "group shared", "dropped") and "www-data" in refusal(result, "group shared")


def test_group_members_keep_target_accounts_and_drop_unknown_ones():
    result = merge({GROUP: "shared:x:2600:alice,sshd,intruder\n"})
    assert "shared:x:2600:alice,sshd\n" in result.files[GROUP]
    assert "intruder" in refusal(result, "group shared")
    assert "shared" in result.groups


# ----- temporary logins and parsing -------------------------------------------------------------------


def test_temporary_logins_are_neither_replicated_nor_removed_nor_a_uid_clash():
    current = {**MIRROR_FILES, PASSWD: MIRROR_FILES[PASSWD] + "tmp-alice:x:2001:2001::/home/alice:/bin/sh\n"}
    source = {**PRODUCTION_FILES, PASSWD: PRODUCTION_FILES[PASSWD] + "tmp-bob:x:2003:2003::/home/bob:/bin/sh\n"}
    result = plan.merge_accounts(current, source, LOW, HIGH)
    assert result.users == ("alice", "bob") and result.refused == ()
    assert "tmp-alice:x:2001" in result.files[PASSWD] and "tmp-bob" not in result.files[PASSWD]


def test_parse_passwd_and_group_skip_malformed_lines():
    accounts = plan.parse_passwd("alice:x:2001:2001:Alice:/home/alice:/bin/bash\nbroken\n")
    assert accounts == [plan.Account("alice", 2001, 2001, "Alice", "/home/alice", "/bin/bash")]
    assert plan.parse_group("web:x:2001:a,b\nbad:x:y:\n") == [plan.Group("web", 2001, ("a", "b"))]


def test_placeholder_shadow_carries_names_only():
    text = plan.placeholder_shadow(["alice", "bob"])
    assert plan.parse_file(SHADOW, text).malformed == ()
    assert [entry.name for entry in plan.parse_file(SHADOW, text).entries] == ["alice", "bob"]
    assert plan.parse_file(GSHADOW, plan.placeholder_shadow(["web"], GSHADOW)).entries[0].fields == ("web", "*", "", "")


# ----- only the service's lines travel ---------------------------------------------------------------


def test_only_the_service_lines_leave_production():
    own = plan.service_accounts(PRODUCTION_FILES, LOW, HIGH)
    assert own.users == ("alice", "bob") and own.groups == ("alice", "bob") and own.refused == ()
    assert own.files[PASSWD] == "alice:x:2001:2001::/home/alice:/bin/bash\nbob:x:2003:2003::/home/bob:/bin/bash\n"
    assert own.files[SHADOW] == "alice:$y$alice-NEW:19100:0:99999:7:::\nbob:$y$bob:19100:0:99999:7:::\n"
    assert own.files[GROUP] == "alice:x:2001:\nbob:x:2003:alice,bob\n" and own.files[GSHADOW] == "alice:!::\nbob:!::\n"
    assert "production-root" not in "".join(own.files.values())
    # merging the screened lines gives exactly what merging production's whole files gives
    assert dict(plan.merge_accounts(MIRROR_FILES, own.files, LOW, HIGH).files) == MERGED


def test_a_hostile_production_cannot_send_root_or_another_services_account():
    hostile = {
        PASSWD: PRODUCTION_FILES[PASSWD] + "root2:x:0:0::/root:/bin/sh\nroot:x:2500:2500::/root:/bin/sh\n"
        "other:x:2600:2600:another service's name:/home/other:/bin/sh\n"
        "eve:x:2601:0::/root:/bin/sh\n",
        SHADOW: PRODUCTION_FILES[SHADOW] + "root2:$y$root2:1::::::\nroot:$y$rootdup:1::::::\nother:$y$other-NEW:1::::::\n"
        "eve:$y$eve:1::::::\n",
        GROUP: PRODUCTION_FILES[GROUP] + "sudo:x:2602:alice\n",
        GSHADOW: PRODUCTION_FILES[GSHADOW],
    }
    own = plan.service_accounts(hostile, LOW, HIGH, users=("alice", "bob", "other", "root"))
    travelled = "".join(own.files.values())
    for secret in ("production-root", "$y$root2", "$y$rootdup", "$y$eve", "sudo"):
        assert secret not in travelled
    assert "UID 0 is root's" in " ".join(own.refused) and "a system account name" in " ".join(own.refused)
    # "other" is declared by mistake and in range on production, but the shared mirror has it
    # outside the range (another service's): the merge keeps the mirror's entry and hash
    merged = plan.merge_accounts(MIRROR_FILES, own.files, LOW, HIGH, ("alice", "bob", "other"))
    assert "other:x:3001:3001:another service" in merged.files[PASSWD] and "other:$y$other:" in merged.files[SHADOW]
    assert "other-NEW" not in merged.files[SHADOW]
    assert not any("$y$" in sentence for sentence in own.refused + merged.refused)


def test_the_merge_never_removes_or_changes_another_services_accounts_on_a_shared_mirror():
    """Two services on one mirror, ranges 2000-2999 and 3000-3999: each merge, whatever its
    production sends, leaves the other's accounts, groups and hashes exactly as they are."""
    shared = {
        PASSWD: MIRROR_FILES[PASSWD] + "web2:x:3002:3002::/home/web2:/bin/sh\n",
        GROUP: MIRROR_FILES[GROUP] + "web2:x:3002:\n",
        SHADOW: MIRROR_FILES[SHADOW] + "web2:$y$web2:19000:0:99999:7:::\n",
        GSHADOW: MIRROR_FILES[GSHADOW] + "web2:!::\n",
    }
    hostile = {
        **PRODUCTION_FILES,
        PASSWD: PRODUCTION_FILES[PASSWD] + "web2:x:2700:2700::/home/web2:/bin/sh\n",
        SHADOW: PRODUCTION_FILES[SHADOW] + "web2:$y$stolen:19000:0:99999:7:::\n",
        GROUP: PRODUCTION_FILES[GROUP] + "mine:x:2701:alice,other,web2\n",
    }
    result = plan.merge_accounts(shared, plan.service_accounts(hostile, LOW, HIGH).files, LOW, HIGH)
    theirs = ("other", "web2")
    for path in (PASSWD, SHADOW, GROUP, GSHADOW):
        before = [line for line in shared[path].splitlines() if line.split(":")[0] in theirs]
        after = [line for line in result.files[path].splitlines() if line.split(":")[0] in theirs]
        assert after == before, path
    assert "$y$stolen" not in result.files[SHADOW]
    # no group of this service may take the other service's accounts as members
    assert "mine:x:2701:alice\n" in result.files[GROUP]
    assert "other" in refusal(result, "group mine", "dropped") and "web2" in refusal(result, "group mine")
