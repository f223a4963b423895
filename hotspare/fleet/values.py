"""The values of a fleet file that a later step parses, parsed once here by the same parsers.

``fleet check`` must accept exactly what use accepts: a cron line goes to Prefect's cron
rule (its vendored croniter, as its deployments validate) and to ``cronsim`` (``hotspare schedule``), a phone number to
``phonenumbers`` (paging compares numbers in E.164), an e-mail address to the standard library's
header parser (the mail composer), a URL to ``httpx``'s parser (probes, webhooks), a time zone
to ``zoneinfo``. Each function returns the value unchanged or raises ``ValueError`` with a
sentence saying what is wrong and what to write; the schema applies them as annotated types
(``CronLine``, ``PhoneNumber``, …), so a bad value is a problem with its file and line.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator


def cron_line(line: str) -> str:
    """A five-field cron line that both Prefect's schedules and cronsim accept."""
    from cronsim import CronSim, CronSimError

    try:
        CronSim(line, datetime(2026, 1, 1))
    except CronSimError as error:
        raise ValueError(f"{line!r} is not a usable cron line ({error}); write five fields, e.g. '0 1 * * *'") from None
    if not _prefect_croniter().is_valid(line) or any(field.casefold() in ("r", "h") for field in line.split()):
        raise ValueError(
            f'{line!r} is not a cron line Prefect schedules (Invalid cron string: "{line}"); '
            "write five fields, e.g. '0 1 * * *'"
        )
    return line


@lru_cache(maxsize=1)
def _prefect_croniter():
    """The ``croniter`` class Prefect's schedules validate with (its vendored copy), loaded from
    its file without importing the ``prefect`` package, which would cost ``fleet check`` a second.
    The rule applied is Prefect's ``validate_cron_string``: valid for croniter, and neither a
    random (``R``) nor a hashed (``H``) field."""
    import importlib.util
    from pathlib import Path

    prefect = importlib.util.find_spec("prefect")
    if prefect is None or prefect.origin is None:
        raise ValueError("Prefect is not installed: cron lines cannot be checked")
    path = Path(prefect.origin).parent / "_vendor" / "croniter" / "croniter.py"
    spec = importlib.util.spec_from_file_location("hotspare_prefect_croniter", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.croniter


def e164(number: str) -> str:
    """``number`` in E.164 (``+4930123456``); ``ValueError`` if it is not an international number.

    The one normalisation of phone numbers: the fleet check, the pages and the acknowledgement
    webhook (which compares a sender with the chain) all use it.
    """
    import phonenumbers

    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is None or not phonenumbers.is_possible_number(parsed):
        raise ValueError(
            f"{number!r} is not a phone number in international form; write + and the country code, e.g. '+49 30 1234567'"
        )
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def phone_number(number: str) -> str:
    """``number`` as written, once ``e164`` accepts it."""
    e164(number)
    return number


def email_address(address: str) -> str:
    """A bare address (``name@example.com``) the mail composer can put in a header."""
    from email.errors import HeaderParseError, MessageError
    from email.headerregistry import Address

    problem = "" if "@" in address and "." in address.rpartition("@")[2] else "it needs a domain with a dot"
    if not problem:
        try:
            Address(addr_spec=address)
        except (ValueError, IndexError, HeaderParseError, MessageError) as error:
            problem = str(error)
    if problem or address != address.strip():
        raise ValueError(
            f"{address!r} is not an e-mail address ({problem or 'spaces around it'}); write one like 'ops@example.com'"
        )
    return address


def url(text: str) -> str:
    """An absolute http(s) URL with a host and a valid port, nothing unprintable in it: what the
    probes and webhooks (``httpx``) can request. Read with the standard library: importing
    ``httpx`` costs a fleet check more than the rest of its parsing."""
    from urllib.parse import urlsplit

    try:
        parsed = urlsplit(text)
        parsed.port  # noqa: B018 - raises ValueError for a port out of range or not a number
        good = (
            parsed.scheme in ("http", "https")
            and bool(parsed.hostname)
            and not any(character.isspace() or not character.isprintable() for character in text)
        )
    except (ValueError, TypeError):
        good = False
    if not good:
        raise ValueError(f"{text!r} is not an http(s) URL with a host; write one like 'https://status.example.com/'")
    return text


def time_zone(name: str) -> str:
    """An IANA time zone ``zoneinfo`` knows (``Europe/Berlin``, ``UTC``)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a time zone; write an IANA name such as 'Europe/Berlin' or 'UTC'") from None
    return name


CronLine = Annotated[str, AfterValidator(cron_line)]
PhoneNumber = Annotated[str, AfterValidator(phone_number)]
EmailAddress = Annotated[str, AfterValidator(email_address)]
Url = Annotated[str, AfterValidator(url)]
TimeZone = Annotated[str, AfterValidator(time_zone)]
