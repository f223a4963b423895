"""RAID and space parsers on recorded outputs (btrfs and df from the lab, md from mdadm's format).

Pure: no lab, no network. The btrfs dead-member outputs were recorded on a lab host after
`hotspare lab break prod-east disk`; md outputs follow mdadm 4.2's format (this kernel has
no md driver, so md is only ever tested on recorded text).
"""

from __future__ import annotations

from pathlib import Path

from hotspare.planning import raid
from hotspare.planning.readings import ComponentKind, ComponentState

DATA = Path(__file__).parents[1] / "data"


def read(name: str) -> str:
    return (DATA / name).read_text()


def by_component(readings):
    return {reading.component: reading for reading in readings}


def test_filesystem_show_lists_every_member_with_its_path():
    [filesystem] = raid.parse_filesystem_show(read("btrfs-filesystem-show-dead-member.txt"))
    assert filesystem.label == "prod-east" and filesystem.total_devices == 4
    assert [device.devid for device in filesystem.devices] == [1, 2, 3, 4]
    assert filesystem.devices[1].path == "/dev/loop19" and not filesystem.devices[1].missing


def test_dead_member_fails_its_disk_and_degrades_the_array():
    readings = by_component(
        raid.btrfs_readings(
            "prod-east", "/srv", read("btrfs-filesystem-show-dead-member.txt"), read("btrfs-device-stats-dead-member.txt")
        )
    )
    disk = readings["disk:devid 2"]
    assert disk.kind is ComponentKind.disk and disk.state is ComponentState.failed
    assert "write_io_errs 5" in disk.evidence and "/dev/loop19" in disk.evidence
    assert disk.part["devid"] == "2" and disk.part["device"] == "/dev/loop19"
    array = readings["raid:/srv"]
    assert array.state is ComponentState.degraded and "devid 2" in array.evidence
    assert all(readings[f"disk:devid {n}"].state is ComponentState.ok for n in (1, 3, 4))


def test_missing_member_from_show_and_from_sysfs_flag():
    show = read("btrfs-filesystem-show-missing.txt")
    readings = by_component(raid.btrfs_readings("prod-east", "/srv", show, ""))
    assert readings["disk:devid 2"].state is ComponentState.failed
    assert "missing" in readings["disk:devid 2"].evidence
    healthy_show = show.replace(" MISSING", "")
    flags = (
        "/sys/fs/btrfs/7a345e66-622d-4b55-8ca7-c90c147a7a30/devinfo/3/missing:1\n"
        "/sys/fs/btrfs/7a345e66-622d-4b55-8ca7-c90c147a7a30/devinfo/1/missing:0\n"
    )
    assert raid.parse_missing_flags(flags) == {3: True, 1: False}
    flagged = by_component(raid.btrfs_readings("prod-east", "/srv", healthy_show, "", flags))
    assert flagged["disk:devid 3"].state is ComponentState.failed
    assert flagged["raid:/srv"].state is ComponentState.degraded


def test_replace_in_progress_is_reported_with_its_progress():
    status = raid.parse_replace_status("12.3% done, 0 write errs, 0 uncorr. read errs\n")
    assert status.running and status.percent == 12.3
    assert not raid.parse_replace_status("Never started\n").running
    show = read("btrfs-filesystem-show-dead-member.txt")
    array = raid.btrfs_readings("prod-east", "/srv", show, "", "", "12.3% done, 0 write errs, 0 uncorr. read errs")[0]
    assert array.state is ComponentState.degraded and "12.3% done" in array.evidence


def test_checksum_errors_degrade_a_disk_without_failing_it():
    stats = (
        read("btrfs-device-stats-dead-member.txt")
        .replace("[/dev/loop19].write_io_errs    5", "[/dev/loop19].write_io_errs    0")
        .replace("[/dev/loop20].corruption_errs  0", "[/dev/loop20].corruption_errs  7")
    )
    readings = by_component(raid.btrfs_readings("prod-east", "/srv", read("btrfs-filesystem-show-dead-member.txt"), stats))
    assert readings["disk:devid 2"].state is ComponentState.ok
    assert readings["disk:devid 3"].state is ComponentState.degraded
    assert "corruption_errs 7" in readings["disk:devid 3"].evidence


def test_mdstat_faulty_member_and_detail():
    readings = by_component(
        raid.md_readings("prod-east", read("mdstat-raid10-faulty.txt"), {"md1": read("mdadm-detail-raid10-faulty.txt")})
    )
    assert readings["raid:/dev/md1"].state is ComponentState.degraded
    assert "[4/3] [UU_U]" in readings["raid:/dev/md1"].evidence
    assert "active, degraded" in readings["raid:/dev/md1"].evidence
    assert readings["disk:sdc1"].state is ComponentState.failed
    assert readings["raid:/dev/md0"].state is ComponentState.ok
    detail = raid.parse_mdadm_detail(read("mdadm-detail-raid10-faulty.txt"))
    assert detail.fields["Failed Devices"] == "1" and ("-", "removed") in detail.members


def test_mdstat_recovery_progress():
    [md1, md0] = raid.parse_mdstat(read("mdstat-raid10-recovering.txt"))
    assert (md1.level, md1.wanted, md1.working, md1.status) == ("raid10", 4, 3, "UU_U")
    assert md1.percent == 27.4 and md0.percent is None
    readings = by_component(
        raid.md_readings("prod-east", read("mdstat-raid10-recovering.txt"), {"md1": read("mdadm-detail-raid10-recovering.txt")})
    )
    assert "recovery = 27.4%" in readings["raid:/dev/md1"].evidence
    assert readings["disk:sde1"].state is ComponentState.degraded
    assert "27% complete" in readings["disk:sde1"].evidence


def test_inactive_array_fails():
    text = "Personalities : [raid1]\nmd2 : inactive sdf1[0](S)\n      976630464 blocks super 1.2\n"
    [reading] = raid.md_readings("x", text)
    assert reading.state is ComponentState.failed and "inactive" in reading.evidence


def test_space_from_df_with_thresholds_and_btrfs_without_inode_limit():
    [reading] = raid.space_readings("prod-east", read("df-P-btrfs.txt"), read("df-Pi-btrfs.txt"))
    assert reading.component == "space:/srv" and reading.state is ComponentState.ok
    assert "no inode limit" in reading.evidence
    full = (
        "Filesystem     1024-blocks      Used Available Capacity Mounted on\n"
        "/dev/sda2        1000000    960000     40000      96% /var/lib/my data\n"
    )
    inodes = (
        "Filesystem      Inodes   IUsed   IFree IUse% Mounted on\n/dev/sda2        1000     880     120   88% /var/lib/my data\n"
    )
    [reading] = raid.space_readings("db1", full, inodes)
    assert reading.state is ComponentState.failed and reading.component == "space:/var/lib/my data"
    assert "96% of" in reading.evidence and "inodes 88% used" in reading.evidence
    [reading] = raid.space_readings("db1", full.replace("960000     40000", "500000    500000"), inodes)
    assert reading.state is ComponentState.degraded  # inodes at 88 %
