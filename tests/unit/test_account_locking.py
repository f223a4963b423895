"""Service accounts on a mirror that does not serve yet log in to nothing (pure; no lab)."""

from __future__ import annotations

from hotspare.planning.accounts import locked_passwords


def test_every_password_of_the_travelling_lines_is_locked_and_nothing_else_changes():
    shadow = (
        "app1-web:$6$salt$hash:20000:0:99999:7:::\n"
        "app1-batch::20000:0:99999:7:::\n"  # no password at all
        "app1-cron:*:20000:0:99999:7:::\n"  # no password login
        "app1-old:!$6$x$y:20000:0:99999:7:::\n"
    )  # locked already
    assert locked_passwords(shadow) == (
        "app1-web:!$6$salt$hash:20000:0:99999:7:::\n"
        "app1-batch:!:20000:0:99999:7:::\n"
        "app1-cron:*:20000:0:99999:7:::\n"
        "app1-old:!$6$x$y:20000:0:99999:7:::\n"
    )
    assert locked_passwords(locked_passwords(shadow)) == locked_passwords(shadow)
    assert locked_passwords("") == ""
