"""Text customers read, made safe to publish: no control characters, one-line headers.

Incident titles and public notes are written by people and programs (a probe's evidence, a
pasted log line). One control character makes the Atom feed invalid XML (XML 1.0 forbids most
of C0), and a CR or LF in a mail header makes the message impossible to send (the standard
library refuses it, and it would be header injection if it did not). Pure functions, applied
where text leaves hotspare: every value the templates print (``planning/notices.environment``)
and every subject line (``one_line``).
"""

from __future__ import annotations

import re
import unicodedata

_LINE_BREAKS = re.compile(r"\r\n?|[\u2028\u2029\x85]")
_SPACES = re.compile(r"\s+")


def _unprintable(character: str) -> bool:
    """Control characters (C0 but tab and newline, DEL, C1), surrogates and XML's non-characters."""
    if character in "\t\n":
        return False
    return unicodedata.category(character) in ("Cc", "Cs") or character in "\ufffe\uffff"


def published(text: str) -> str:
    """``text`` with line breaks as ``\\n`` and every other control character replaced by a space."""
    text = _LINE_BREAKS.sub("\n", text)
    if not any(_unprintable(character) for character in text):
        return text
    return "".join(" " if _unprintable(character) else character for character in text)


def one_line(text: str) -> str:
    """``text`` folded to one line for a header or a title: controls and line breaks become one
    space, runs of white space one space."""
    return _SPACES.sub(" ", published(text).replace("\n", " ").replace("\t", " ")).strip()
