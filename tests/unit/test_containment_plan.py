"""The containment planner, pure: who a drill's commands run as (and the refusals), the view built
from a mount table, the audit that finds a mount through which the app could reach the mirror."""

from __future__ import annotations

from hotspare.planning import containment

SPEC = {"accounts": {"uid_min": 2000, "uid_max": 2999}}
COPY = (
    "root:x:0:0:root:/root:/bin/sh\napp1-web:x:2001:2001::/home/app1-web:/bin/sh\n"
    "app1-batch:x:2002:2002::/home/app1-batch:/bin/sh\n"
)
MIRROR = "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33::/var/www:/bin/sh\ntoor:x:0:0::/:/bin/sh\n"


def identity(spec: dict, copy: str = COPY, mirror: str = MIRROR):
    return containment.choose_identity("app1", spec, copy, mirror)


def test_default_is_the_first_declared_account_else_the_copys_first_in_range():
    assert identity(SPEC) == containment.Identity("app1-web", 2001, 2001, "/home/app1-web", "copy")
    declared = {"accounts": {**SPEC["accounts"], "users": ["app1-batch"]}}
    assert identity(declared).name == "app1-batch"
    assert identity({**SPEC, "run_as": "www-data"}) == containment.Identity("www-data", 33, 33, "/var/www", "mirror")


def test_root_only_when_named_and_then_only_inside_a_user_namespace():
    root = identity({**SPEC, "run_as": "root"})
    assert root.as_root and "user namespace" in root.describe()
    refusal = identity({"accounts": {"uid_min": 5000, "uid_max": 5999}})
    assert isinstance(refusal, str) and "would run as root" in refusal and "run_as" in refusal
    assert "root on the mirror" in identity({**SPEC, "run_as": "toor"})
    assert "no account" in identity({**SPEC, "run_as": "nobody-here"})


def test_a_hostile_copy_cannot_choose_root_or_another_customers_ids():
    for hostile in ("app1-web:x:0:0::/root:/bin/sh\n", "app1-web:x:3001:3001::/:/bin/sh\n", "app1-web:x:2001:42::/:/bin/sh\n"):
        refusal = identity({**SPEC, "run_as": "app1-web"}, copy=hostile)
        assert isinstance(refusal, str) and "outside the service's UID range 2000..2999" in refusal, hostile


def test_mountinfo_is_parsed_with_its_escapes():
    [mount] = containment.parse_mountinfo("36 35 98:0 /x /srv/my\\040data rw,nosuid shared:1 - ext4 /dev/vda rw\n")
    assert (mount.point, mount.root, mount.fstype, mount.source) == ("/srv/my data", "/x", "ext4", "/dev/vda")
    assert "nosuid" in mount.options and "rw" in mount.options
    assert containment.parse_mountinfo("garbage\n") == []


def test_the_view_overlays_disk_filesystems_parents_first_and_nothing_private():
    table = "\n".join(
        f"{n} 1 0:{n} / {point} rw - {kind} src rw"
        for n, (point, kind) in enumerate(
            [
                ("/srv/data", "btrfs"),
                ("/", "ext4"),
                ("/proc", "proc"),
                ("/srv", "btrfs"),
                ("/run/netns", "ext4"),
                ("/home", "ext4"),
                ("/var/lib/hotspare/drills/x", "tmpfs"),
                ("/mnt/nfs", "nfs4"),
                ("/media/usb", "vfat"),
                ("/a,b", "ext4"),
                ("/srv", "btrfs"),
            ]
        )
    )
    points = containment.filesystems_to_overlay(containment.parse_mountinfo(table), ("/var/lib/hotspare/drills",))
    assert points == ["/", "/srv", "/srv/data"]


def test_the_audit_names_every_way_out():
    view, tag = "/s/view", "hsdrill-x"
    good = [
        f"1 0 0:1 / {view} rw,nosuid,nodev - overlay {tag} rw",
        f"2 1 0:2 /null {view}/dev/null rw,nosuid,noexec - devtmpfs udev rw",
        f"3 1 0:3 / {view}/sys ro,nosuid,nodev,noexec - sysfs {tag} rw",
        f"4 1 0:4 / {view}/etc/hosts ro,nosuid,nodev - ext4 /dev/vda rw",
        "5 0 0:5 / /srv rw - btrfs /dev/loop0 rw",
    ]
    assert containment.audit_view(containment.parse_mountinfo("\n".join(good)), view, tag) == []
    bad = good + [
        f"6 1 0:6 / {view}/srv rw,nosuid,nodev - btrfs /dev/loop0 rw",
        f"7 1 0:7 / {view}/opt rw,nodev - overlay {tag} rw",
        f"8 1 0:8 /sda {view}/dev/sda rw,nosuid - devtmpfs udev rw",
    ]
    found = containment.audit_view(containment.parse_mountinfo("\n".join(bad)), view, tag)
    assert any(sentence.startswith("/srv is writable and not the drill's own") for sentence in found)
    assert "/opt lacks nosuid (overlay)" in found
    assert any(sentence.startswith("/dev/sda is writable") for sentence in found)
    assert containment.audit_view([], view, tag) == [f"the view {view} is not mounted"]


def test_masks_hide_other_services_but_never_a_folder_holding_the_services_own_paths():
    own = ("/srv/app1/data", "/etc/app1")
    masks = containment.mask_paths(own, ("/srv/app2/data", "/srv", "/etc/app2/", "/", "/x,y"), ("/srv/hotspare",))
    assert masks == ("/srv/hotspare", "/srv/app2/data", "/etc/app2")


def test_commands_enter_the_view_before_dropping_to_the_user_then_a_user_namespace():
    user = containment.Identity("app1-web", 2001, 2001, "/home/app1-web", "copy")
    argv = containment.contained_argv(["nsenter", "--"], "/s/view", user, ["/srv/app1/app/ctl", "start"])
    assert argv.index(containment.ENTER_VIEW) < argv.index("setpriv") < argv.index("--map-current-user")
    assert argv[argv.index("setpriv") : argv.index("setpriv") + 5] == ["setpriv", "--reuid", "2001", "--regid", "2001"]
    assert {"--clear-groups", "--nnp", "--bounding-set=-all"} <= set(argv) and argv[-2:] == ["/srv/app1/app/ctl", "start"]
    root = containment.contained_argv([], "/s/view", containment.Identity("root", 0, 0, "/root", "x"), ["true"])
    assert root[root.index("--reuid") + 1] == str(containment.NOBODY) and "--map-root-user" in root


def test_failover_commands_run_as_the_named_user_only():
    assert containment.as_service_user(["ctl", "start"], None) == ["ctl", "start"]
    assert containment.as_service_user(["ctl", "start"], "root") == ["ctl", "start"]
    wrapped = containment.as_service_user(["ctl", "start"], "app1-web")
    assert wrapped[:2] == ["sh", "-c"] and wrapped[3:] == ["sh", "app1-web", "ctl", "start"]


def test_several_commands_run_in_one_with_every_word_intact():
    import subprocess

    words = ["a b", "$(id)", '"q"', "'", "*", "\\n", *map(str, range(12))]
    argvs = [["printf", "%s|", *words], ["sh", "-c", "exit 3"], ["touch", "/never-made"]]
    result = subprocess.run(containment.each_argv(argvs), capture_output=True, text=True, timeout=10, check=False)
    assert result.stdout == "|".join(words) + "|"
    assert result.returncode == 3 and "command 2 (sh) failed with exit 3" in result.stderr
    assert subprocess.run(containment.each_argv([]), timeout=10, check=False).returncode == 0
