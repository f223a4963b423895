"""What the command line prints cannot steer the operator's terminal (pure; no lab)."""

from __future__ import annotations

import io

from hotspare.commands.errors import report
from hotspare.commands.terminal import SafeStream, safe


def test_escape_sequences_from_a_customer_server_print_as_spaces():
    hostile = "hook failed \x1b]0;PWNED-TITLE\x07\x1b[2J\x1b[31mred\x1b[0m\rover\x0b\x0cend"
    assert safe(hostile) == "hook failed  ]0;PWNED-TITLE  [2J [31mred [0m\nover  end"
    stream = io.StringIO()
    SafeStream(stream).write(hostile + "\ttabs and\nlines stay\n")
    assert "\x1b" not in stream.getvalue() and "\x07" not in stream.getvalue()
    assert stream.getvalue().endswith("\ttabs and\nlines stay\n")


def test_an_error_message_carrying_escape_sequences_is_printed_safe(capsys):
    from hotspare.adapters.errors import PermanentError

    report(PermanentError("on prod-east: `hook` exited 1: \x1b]0;PWNED\x07\x1b[2Jhook failed"), "hotspare replicate app1", False)
    printed = capsys.readouterr().err
    assert "hook failed" in printed and "\x1b" not in printed and "\x07" not in printed
