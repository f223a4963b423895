"""The drill planner, pure: facts in, a plan (or a refusal with its sentence) and argument lists out."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from hotspare.planning import drill as planning

NOW = datetime(2026, 11, 30, 13, 30, tzinfo=timezone.utc)
SPEC = {
    "data_paths": ["/srv/app1/data"],
    "app_paths": ["/srv/app1/app"],
    "config_paths": ["/etc/app1"],
    "accounts": {"uid_min": 2000, "uid_max": 2999, "files": ["/srv/app1/accounts"]},
    "activate": [["/srv/app1/app/ctl", "start"]],
    "health_url": "http://app1.lab.test:8080/health.txt",
}
PASSWD = "root:x:0:0:root:/root:/bin/sh\napp1-web:x:2001:2001::/home/app1-web:/bin/sh\nother:x:3001:3001::/:/bin/sh\n"


def facts(**changes) -> planning.DrillFacts:
    values = dict(
        service="app1",
        spec=SPEC,
        state="protected",
        mirror="mirror-west",
        production_address="10.211.71.11",
        host_address="10.211.71.12",
        copy_id="app1-20261130T010000Z",
        copy_started=NOW - timedelta(hours=12),
    )
    values.update(changes)
    return planning.DrillFacts(**values)


def plan(**changes) -> planning.DrillPlan:
    result = planning.plan_drill(facts(**changes), planning.drill_id_for(NOW, "ab12"), NOW, PASSWD)
    assert isinstance(result, planning.DrillPlan), result
    return result


def test_plan_names_everything_from_service_and_drill_id():
    drill = plan()
    assert drill.drill_id == "20261130t133000z-ab12"
    assert drill.netns == "hsdrill-app1-20261130t133000z-ab12"
    assert drill.scratch == "/var/lib/hotspare/drills/20261130t133000z-ab12"
    assert drill.manifest == drill.scratch + ".json"
    assert drill.tree == "/srv/hotspare/app1/copies/app1-20261130T010000Z/tree"
    assert drill.tops == ("/etc", "/srv")
    # the system account files are not a copied path (only the service's lines travel, merged
    # into the mirror's own): the bubble sees the mirror's /etc/passwd under its /etc overlay
    assert "/etc/passwd" not in drill.paths and "/srv/app1/accounts" in drill.paths
    assert drill.canary_users == ("app1-web",)
    assert drill.rpo_seconds == 12 * 3600
    manifest = json.loads(drill.manifest_text())
    assert planning.stale_manifests([manifest], "app1", "mirror-west", "10.211.71.12") == [manifest]


def test_refusals_say_why_and_create_nothing():
    for changes, words in (
        ({"state": "failed-over"}, "it is failed-over"),
        ({"copy_id": None}, "no verified copy"),
        ({"spec": {**SPEC, "data_paths": ["/srv/a,b"]}}, "mount option"),
        ({"spec": {**SPEC, "data_paths": ["/proc/x"]}}, "overlay over /proc"),
    ):
        decision = planning.plan_drill(facts(**changes), "id", NOW, PASSWD)
        assert isinstance(decision, planning.Decision) and not decision.go
        assert words in decision.reason and "nothing was created" in decision.reason.lower()


def test_scratch_never_inside_a_top_overlay():
    assert planning.scratch_root(("/etc", "/srv")) == "/var/lib/hotspare/drills"
    assert planning.scratch_root(("/var",)) == "/srv/hotspare/drills"
    assert planning.scratch_root(("/opt", "/srv", "/var")) is None


def test_bubble_has_both_veth_ends_inside_and_the_production_address():
    drill = plan()
    argvs = planning.bubble_argvs(drill)
    assert argvs[0] == ["ip", "netns", "add", drill.netns]
    assert ["ip", "-n", drill.netns, "link", "add", "drill0", "type", "veth", "peer", "name", "drill1"] in argvs
    assert ["ip", "-n", drill.netns, "address", "add", "10.211.71.11/32", "dev", "drill0"] in argvs
    assert ["ip", "-n", drill.netns, "link", "set", "lo", "up"] in argvs
    assert not any("netns" in argv[argv.index("peer") :] for argv in argvs if "peer" in argv)  # no end outside


def test_mounts_happen_only_in_the_holders_mount_namespace():
    drill = plan()
    [workspace] = planning.workspace_argvs(drill, 4242)
    assert workspace[:5] == ["nsenter", "--target", "4242", "--mount", "--"]
    assert workspace[5:9] == ["mount", "-t", "overlay", drill.tag]
    assert f"lowerdir={drill.tree}," in workspace[10] and workspace[-1] == drill.scratch + "/merged"
    mountinfo = (
        "1 0 8:1 / / rw,relatime - ext4 /dev/vda rw\n"
        "2 1 0:5 / /srv rw,relatime - btrfs /dev/loop0 rw\n"
        "3 1 0:6 / /proc rw - proc proc rw\n"
    )
    view = planning.view_argvs(drill, 4242, mountinfo)
    assert all(argv[:4] == ["nsenter", "--target", "4242", "--mount"] for argv in view)
    layers = [argv for argv in view if "lowerdir=$1" in " ".join(argv)]
    assert [argv[-3] for argv in layers] == [drill.view, drill.view + "/srv"]  # / first, then /srv
    binds = [argv for argv in view if "realpath -e" in " ".join(argv) and drill.workspace in argv]
    assert binds[0][-5:-3] == [drill.scratch + "/merged/srv/app1/data", drill.view + "/srv/app1/data"]


def test_app_health_and_canary_run_inside_the_bubble():
    drill = plan()
    [activate] = planning.activate_argvs(drill, 7)
    assert activate[:8] == ["nsenter", "--target", "7", "--net", "--mount", "--pid", "--ipc", "--"]
    assert activate[-2:] == ["/srv/app1/app/ctl", "start"] and drill.view in activate
    assert activate[activate.index("setpriv") :][:5] == ["setpriv", "--reuid", "2001", "--regid", "2001"]
    health = planning.health_argv(drill, 7)
    assert health[:5] == ["nsenter", "--target", "7", "--net", "--"]
    assert health[-1] == "http://10.211.71.11:8080/health.txt" and "Host: app1.lab.test" in health
    assert planning.canary_argv(drill, 7, "app1-web")[-6:] == ["su", "-s", "/bin/sh", "-c", "true", "app1-web"]
    assert planning.judge_health(["000", "200"]).go
    assert not planning.judge_health(["000", "503"]).go


def test_teardown_and_proof_name_only_the_drills_things():
    drill = plan()
    assert planning.teardown_argvs(drill.netns, drill.scratch) == [
        ["ip", "netns", "delete", drill.netns],
        ["rm", "-rf", "--one-file-system", "--", drill.scratch],
    ]
    assert planning.prove_argv(drill.netns, drill.scratch, drill.tag)[-3:] == [drill.netns, drill.scratch, drill.tag]
    assert planning.parse_leftovers("\nnamespace x still exists\n") == ["namespace x still exists"]


def test_stale_manifests_are_this_hosts_and_safe_only():
    good = json.loads(plan().manifest_text())
    other_lab = {**good, "host_address": "10.211.72.12"}
    other_service = {**good, "service": "app2"}
    forged = {**good, "scratch": "/"}
    text = "\n".join(json.dumps(item) for item in (good, other_lab, other_service, forged)) + "\nnot json\n"
    manifests = planning.parse_manifests(text)
    assert len(manifests) == 4
    assert planning.stale_manifests(manifests, "app1", "mirror-west", "10.211.71.12") == [good]
    assert planning.stale_manifests(manifests, None, "mirror-west", "10.211.71.12") == [good, other_service]
