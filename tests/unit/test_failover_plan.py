"""The failover planner with golden inputs and outputs: which copy, which steps, when it refuses,
how a crashed run resumes; and the activation and rebuild placement commands it leads to."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from hotspare.planning.failover import CopyChoice, ServiceFacts, activation_argv, plan_failover

NOW = datetime(2026, 11, 25, 13, 0, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


# ---------------------------------------------------------------------------------------
# Failover planning

VERIFIED_OLD = CopyChoice("20261125T100000Z", "verified", NOW - 3 * HOUR, "/srv/hotspare/shop/copies/20261125T100000Z")
COPIED_NEW = CopyChoice("20261125T120000Z", "copied", NOW - HOUR, "/srv/hotspare/shop/copies/20261125T120000Z")
VERIFIED_STALE = CopyChoice("20261124T070000Z", "verified", NOW - 30 * HOUR, "/srv/hotspare/shop/copies/20261124T070000Z")


def facts(**changes) -> ServiceFacts:
    base = ServiceFacts(
        service="shop",
        state="protected",
        active_server="east-1",
        mirror_server="west-1",
        dns_name="shop.example.test.",
        addresses={"east-1": "10.211.70.11", "west-1": "10.211.70.12", "west-2": "10.211.70.13"},
        dns_answer=["10.211.70.11"],
        copies=[COPIED_NEW, VERIFIED_OLD],
    )
    return replace(base, **changes)


def test_emergency_picks_the_newest_verified_copy():
    newest_verified = CopyChoice("20261125T123000Z", "verified", NOW - HOUR / 2, "/p")
    result = plan_failover(facts(copies=[newest_verified, VERIFIED_OLD]), planned=False, now=NOW)
    assert result.refusal is None and result.warnings == ()
    assert (result.mode, result.source, result.target) == ("emergency", "east-1", "west-1")
    assert (result.source_address, result.target_address) == ("10.211.70.11", "10.211.70.12")
    assert result.copy_id == "20261125T123000Z"
    assert result.copy_age_seconds == 1800
    assert result.steps[0].startswith("fence production")


def test_emergency_skips_an_unverified_newest_copy():
    result = plan_failover(facts(), planned=False, now=NOW)
    assert result.refusal is None
    assert result.copy_id == VERIFIED_OLD.id
    assert result.copy_age_seconds == 3 * 3600


def test_no_verified_copy_is_refused_mentioning_force():
    result = plan_failover(facts(copies=[COPIED_NEW]), planned=False, now=NOW)
    assert result.refusal == (
        "no verified copy exists on the mirror; the newest copy 20261125T120000Z is copied. "
        "Use force to promote an unverified copy."
    )


def test_force_with_only_unverified_copies_proceeds_with_a_warning():
    result = plan_failover(facts(copies=[COPIED_NEW]), planned=False, now=NOW, force=True)
    assert result.refusal is None
    assert result.copy_id == COPIED_NEW.id
    assert len(result.warnings) == 1 and "no verified copy" in result.warnings[0]


def test_no_copy_at_all_is_refused_even_with_force():
    for force in (False, True):
        result = plan_failover(facts(copies=[]), planned=False, now=NOW, force=force)
        assert result.refusal is not None and result.copy_id is None


def test_named_copy_is_used():
    stale_allowed = plan_failover(facts(copies=[COPIED_NEW, VERIFIED_OLD]), planned=False, now=NOW, copy_id=VERIFIED_OLD.id)
    assert stale_allowed.copy_id == VERIFIED_OLD.id and stale_allowed.refusal is None


def test_named_unverified_copy_needs_force():
    refused = plan_failover(facts(), planned=False, now=NOW, copy_id=COPIED_NEW.id)
    assert refused.refusal == "copy 20261125T120000Z is copied, not verified. Use force to promote it anyway."
    forced = plan_failover(facts(), planned=False, now=NOW, copy_id=COPIED_NEW.id, force=True)
    assert forced.refusal is None and forced.copy_id == COPIED_NEW.id and forced.warnings


def test_missing_named_copy_is_refused():
    result = plan_failover(facts(), planned=False, now=NOW, copy_id="20200101T000000Z")
    assert result.refusal == ("copy 20200101T000000Z does not exist on the mirror (known: 20261125T120000Z, 20261125T100000Z)")
    assert result.copy_id is None


def test_too_old_copy_is_refused_unless_forced():
    refused = plan_failover(facts(copies=[VERIFIED_STALE]), planned=False, now=NOW)
    assert refused.refusal == ("copy 20261124T070000Z is 30.0 h old, beyond the 24 h limit. Use force to accept the data loss.")
    assert plan_failover(facts(copies=[VERIFIED_STALE]), planned=False, now=NOW, max_copy_age_hours=48).refusal is None
    forced = plan_failover(facts(copies=[VERIFIED_STALE]), planned=False, now=NOW, force=True)
    assert forced.refusal is None and forced.copy_id == VERIFIED_STALE.id
    assert forced.warnings == (refused.refusal,)


def test_planned_mode_has_no_copy_and_planned_steps():
    result = plan_failover(facts(), planned=True, now=NOW, copy_id=COPIED_NEW.id)
    assert result.refusal is None
    assert result.mode == "planned"
    assert result.copy_id is None and result.copy_age_seconds is None
    assert "stop the app on production" in result.steps
    assert "final sync and verify (no writes are lost)" in result.steps
    assert not any("fence" in step for step in result.steps)


def test_planned_mode_needs_no_copy_on_the_mirror():
    assert plan_failover(facts(copies=[]), planned=True, now=NOW).refusal is None


def test_already_failed_over_is_done():
    after = facts(state="failed-over", active_server="west-1", mirror_server=None, dns_answer=["10.211.70.12"], copies=[])
    result = plan_failover(after, planned=False, now=NOW)
    assert result.already_done
    assert result.refusal == "shop already runs on west-1; reprotect it before failing over again"


def test_failed_over_but_dns_elsewhere_is_not_done_and_without_mirror_refused():
    after = facts(state="failed-over", active_server="west-1", mirror_server=None, dns_answer=["10.211.70.11"])
    result = plan_failover(after, planned=False, now=NOW)
    assert not result.already_done
    assert result.refusal == "shop has no mirror to fail over to (state failed-over)"


def test_service_without_mirror_is_refused():
    result = plan_failover(facts(state="unprotected", mirror_server=None), planned=True, now=NOW)
    assert result.refusal == "shop has no mirror to fail over to (state unprotected)"
    assert result.steps == ()


def test_crashed_emergency_failover_resumes_what_it_was_doing():
    crashed = facts(
        state="failing-over",
        mirror_server="west-2",  # the row may have moved on; the in-flight record rules
        in_flight={"source": "east-1", "target": "west-1", "mode": "emergency", "copy_id": VERIFIED_OLD.id, "run_id": 7},
    )
    # asked differently this time (planned, another copy): the crashed run's choices win
    result = plan_failover(crashed, planned=True, now=NOW, copy_id=COPIED_NEW.id)
    assert result.refusal is None
    assert (result.mode, result.source, result.target, result.copy_id) == ("emergency", "east-1", "west-1", VERIFIED_OLD.id)
    assert result.target_address == "10.211.70.12"


def test_crashed_planned_switchover_after_its_final_sync_keeps_that_copy():
    """The final sync's copy may already be live with users writing to it: a resumed run must
    make that copy live (idempotent), not take a new one from the stopped production."""
    crashed = facts(
        state="failing-over",
        in_flight={"source": "east-1", "target": "west-1", "mode": "planned", "copy_id": COPIED_NEW.id, "run_id": 8},
    )
    result = plan_failover(crashed, planned=False, now=NOW)
    assert result.refusal is None
    assert (result.mode, result.copy_id) == ("planned", COPIED_NEW.id)
    assert "no data loss" in result.markdown()


def test_crashed_planned_switchover_before_its_final_sync_does_it():
    crashed = facts(state="failing-over", in_flight={"source": "east-1", "target": "west-1", "mode": "planned", "copy_id": None})
    result = plan_failover(crashed, planned=True, now=NOW)
    assert (result.mode, result.copy_id, result.refusal) == ("planned", None, None)


def test_digest_is_stable_and_binds_copy_and_target():
    first = plan_failover(facts(), planned=False, now=NOW)
    again = plan_failover(facts(), planned=False, now=NOW + timedelta(minutes=5))  # age differs, plan does not
    assert first.digest == again.digest
    assert len(first.digest) == 16 and int(first.digest, 16) >= 0
    other_copy = plan_failover(facts(), planned=False, now=NOW, copy_id=COPIED_NEW.id, force=True)
    assert other_copy.digest != first.digest
    other_target = plan_failover(facts(mirror_server="west-2"), planned=False, now=NOW)
    assert other_target.copy_id == first.copy_id and other_target.digest != first.digest
    planned = plan_failover(facts(), planned=True, now=NOW)
    assert planned.digest != first.digest


def test_markdown_shows_digest_copy_and_steps():
    result = plan_failover(facts(), planned=False, now=NOW)
    text = result.markdown()
    assert f"Plan digest: `{result.digest}`" in text
    assert "copy **20261125T100000Z**, taken 3 h ago" in text
    assert "from **east-1** (10.211.70.11) to **west-1** (10.211.70.12)" in text
    for number, step in enumerate(result.steps, 1):
        assert f"{number}. {step}" in text
    assert "REFUSED" not in text


def test_markdown_shows_refusal_and_warnings():
    refused = plan_failover(facts(copies=[COPIED_NEW]), planned=False, now=NOW).markdown()
    assert "**REFUSED:** no verified copy" in refused
    forced = plan_failover(facts(copies=[COPIED_NEW]), planned=False, now=NOW, force=True).markdown()
    assert "## Warnings" in forced and "REFUSED" not in forced
    planned = plan_failover(facts(), planned=True, now=NOW).markdown()
    assert "final sync with the app stopped on production: no data loss" in planned


def test_activation_argv_golden():
    tree = "/srv/hotspare/shop/copies/20261125T100000Z/tree"
    assert activation_argv(tree, ["/srv/shop/data", "/etc/nginx/sites-enabled/shop.conf"]) == [
        "rsync",
        "-aHAX",
        "--numeric-ids",
        "--relative",
        "--delete",
        f"{tree}/./srv/shop/data",
        f"{tree}/./etc/nginx/sites-enabled/shop.conf",
        "/",
    ]


@pytest.mark.parametrize("live_path", ["/", "/etc", "/srv/hotspare/app1", "srv/app1/data", "/srv/app1/../etc"])
def test_a_rebuild_never_places_files_with_delete_outside_a_safe_declared_path(live_path):
    from hotspare.planning.rebuild import place_command
    from hotspare.planning.shell_programs import PlanRefused

    backup = "/srv/hotspare/app1/replaced/rebuild-20261206T100000Z"
    with pytest.raises(PlanRefused, match="refusing to place restored files"):
        place_command("/var/tmp/hotspare-restore/app1-x", live_path, backup)
    assert place_command("/var/tmp/hotspare-restore/app1-x", "/srv/app1/data", backup)[-2:] == ["/srv/app1/data", backup]
    with pytest.raises(PlanRefused, match="backup folder"):  # what a rebuild replaces is kept inside hotspare's root
        place_command("/var/tmp/hotspare-restore/app1-x", "/srv/app1/data", "/srv/app1/data/kept")


def test_activation_keeps_what_rsync_replaces_in_the_runs_folder():
    from hotspare.adapters.errors import PermanentError

    tree = "/srv/hotspare/shop/copies/20261125T100000Z/tree"
    backup = "/srv/hotspare/shop/replaced/20261125T100000Z-20261206T100000Z"
    assert activation_argv(tree, ["/srv/shop/data"], backup) == [
        "rsync",
        "-aHAX",
        "--numeric-ids",
        "--relative",
        "--delete",
        "--backup",
        f"--backup-dir={backup}",
        f"{tree}/./srv/shop/data",
        "/",
    ]
    for outside in ("/srv/shop/data/kept", "/srv/hotspare/../tmp"):
        with pytest.raises(PermanentError, match="backup folder"):
            activation_argv(tree, ["/srv/shop/data"], outside)
