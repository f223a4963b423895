"""The status page key: one per fleet, in a Prefect block, made once on first use.

The key (32 random bytes) names each customer's page (``c/<HMAC of the name>/``), each incident's
public reference and each subscriber's unsubscribe link (``planning/subscriptions.py``). Every
process that publishes pages, sends notices or answers the subscription form must compute the
same ones, wherever it runs (a worker per facility, each with its own ``HOTSPARE_HOME``; the
subscription endpoint elsewhere): so the key lives in the ``StatusPageKey`` block the fleet names
(``customer_notices.status_page_key_block``, default ``status-page-key``), never in a file.

Made once: a process that finds no block saves a new key *without overwriting*; when two meet,
the API keeps the first save and the other, refused the name, loads what was saved. Every path
returns the key as stored in the API, so racing processes end with the same one.

Before this the key was ``$HOTSPARE_HOME/status-page.key``. Where the block is missing and that
file exists, its key goes into the block (the page addresses stay the same) and the file is
removed once the block is saved. A malformed file is refused with one line and nothing changes.
A file left beside an existing block is removed when it holds the block's key, and otherwise
left alone with a warning (it is another host's old key, the addresses that host published).

Cached per process for ``CACHE_SECONDS``: the form's requests and a notice's unsubscribe links
(one per subscriber) would otherwise load the block each time, and a public form would drive
Prefect API calls. ``bench/status_page_key_bench.py`` (200 interleaved, load 4.3 on 2 cores): a
bare block load 90 ms median, an uncached ``key_from_block`` 1.06 times that, a cached one 3 µs,
the old file 1.4 ms. After a rotation a process uses the old key at most ``CACHE_SECONDS``.

The key's value appears in no log, exception, argv or artifact: errors name the block, never the
value, and a malformed value is not echoed (``StatusPageKey`` hides validation input).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from pathlib import Path
from typing import cast

from hotspare.errors import HotspareError, MissingConfiguration, TransientError
from hotspare.planning.subscriptions import key_text

log = logging.getLogger("hotspare.subscriptions")

LEGACY_FILE = "status-page.key"
CACHE_SECONDS = 30.0

_cache: dict[str, tuple[float, bytes]] = {}
_cache_lock = threading.Lock()
_noted_leftovers: set[Path] = set()


def status_page_key(fleet) -> bytes:
    """The fleet's status page key (32 bytes), from the block its fleet file names."""
    return key_from_block(fleet.customer_notices.status_page_key_block)


def key_from_block(block_name: str, home: Path | None = None) -> bytes:
    """The key in block ``block_name``; made (or moved from ``home``'s legacy file) when missing.

    ``home`` is where an old key file may lie (default: ``$HOTSPARE_HOME``)."""
    with _cache_lock:  # one load per expiry, and one creation per process
        now = time.monotonic()
        cached = _cache.get(block_name)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        key = bytes.fromhex(_load_or_make(block_name, home))
        _cache[block_name] = (now, key)
        return key


def forget_status_page_key() -> None:
    """Drop the cached key (after a rotation, or between tests)."""
    with _cache_lock:
        _cache.clear()


def _legacy_path(home: Path | None) -> Path:
    if home is not None:
        return home / LEGACY_FILE
    from hotspare.local_secrets import private_home

    return private_home() / LEGACY_FILE


def _load_or_make(block_name: str, home: Path | None) -> str:
    """The key's hex digits as stored in the API, after making or migrating it if needed."""
    stored = _stored(block_name)
    legacy = _legacy_path(home)
    if stored is not None:
        _leftover_file(legacy, stored, block_name)
        return stored
    if legacy.exists():
        return _migrate(legacy, block_name)
    ours = secrets.token_hex(32)
    saved = _save_first(block_name, ours)
    if saved == ours:
        log.info("status page key: Prefect block %r was missing; a new key is in it (one key for the whole fleet)", block_name)
    else:
        log.info("status page key: Prefect block %r was made by another process at the same moment; using its key", block_name)
    return saved


def _read_legacy(legacy: Path) -> str:
    """The key in the old key file, tightened to 0600 as before; a one-line error when malformed."""
    from hotspare.local_secrets import private_file

    private_file(legacy, "the status page key")
    try:
        text = key_text(legacy.read_text(errors="replace"))
    except OSError as error:
        raise MissingConfiguration(f"{legacy} (the old status page key) cannot be read: {error.strerror}") from None
    if text is None:
        raise MissingConfiguration(
            f"{legacy} does not hold a status page key (64 hex digits): restore it from a backup, or remove it "
            "to make a new key (every customer page address changes)"
        )
    return text


def _migrate(legacy: Path, block_name: str) -> str:
    """The old file's key saved into the block (unless another process saved one first); the file
    removed once the block holds its key."""
    text = _read_legacy(legacy)  # malformed: refused here, before anything is saved or removed
    stored = _save_first(block_name, text)
    if stored == text:
        legacy.unlink(missing_ok=True)  # another process moving the same file may have removed it
        log.warning(
            "status page key: moved from %s into Prefect block %r and removed the file; customer page addresses "
            "stay the same (back the block up, not the file)",
            legacy,
            block_name,
        )
    else:
        _leftover_file(legacy, stored, block_name)
    return stored


def _leftover_file(legacy: Path, stored: str, block_name: str) -> None:
    """An old key file beside the block: removed when it holds the block's key, else left with a
    warning (once per process), since it is the key of addresses this host once published."""
    if legacy in _noted_leftovers or not legacy.exists():
        return
    try:
        text = _read_legacy(legacy)
    except MissingConfiguration:
        text = None
    if text == stored:
        legacy.unlink(missing_ok=True)
        log.warning("status page key: %s held the key of Prefect block %r; the file is removed", legacy, block_name)
        return
    _noted_leftovers.add(legacy)
    log.warning(
        "status page key: %s does not hold Prefect block %r's key and is not used; the block's key names "
        "the customer pages (remove the file once nobody needs the addresses it made)",
        legacy,
        block_name,
    )


def _stored(block_name: str) -> str | None:
    """The key's hex digits in the block; None when there is no such block."""
    from prefect.exceptions import ObjectNotFound

    from blocks.credentials import StatusPageKey

    try:
        block = cast(StatusPageKey, StatusPageKey.load(block_name))  # sync: called outside any event loop
    except (ValueError, RuntimeError) as error:  # Prefect: missing is a ValueError, failed validation a RuntimeError
        if isinstance(error.__cause__, ObjectNotFound):
            return None
        raise MissingConfiguration(  # its text is left out: a validation error's could hold key digits
            f"Prefect block {block_name!r} (StatusPageKey) does not hold a status page key (64 hex digits): "
            "restore it from a backup, or delete the block to make a new key (every customer page address changes)"
        ) from None
    except _api_errors() as error:
        raise _api_error(error, block_name, "load") from None
    text = key_text(block.key.get_secret_value())
    assert text is not None  # the block's validator checked it
    return text


def _save_first(block_name: str, text: str) -> str:
    """Save ``text`` as the block unless one exists; the key the API holds afterwards."""
    from prefect.exceptions import ObjectAlreadyExists
    from pydantic import SecretStr

    from blocks.credentials import StatusPageKey

    for attempt in (1, 2):
        try:
            StatusPageKey(key=SecretStr(text)).save(block_name, overwrite=False)
        except ObjectAlreadyExists:
            # Another process registered the block type or schema at the same moment; it exists now.
            if attempt == 2:
                raise TransientError(f"Prefect block {block_name!r}: registering its type kept meeting another process") from None
            continue
        except ValueError:
            pass  # the name is taken: another process saved its key first, which wins (loaded below)
        except _api_errors() as error:
            raise _api_error(error, block_name, "save") from None
        break
    stored = _stored(block_name)
    if stored is None:
        raise TransientError(f"Prefect block {block_name!r} (StatusPageKey) was neither saved nor found; try again")
    return stored


def _api_errors() -> tuple[type[Exception], ...]:
    """An unreachable or refusing API (imported here: httpx takes half a second to import)."""
    import httpx

    return (httpx.HTTPError, OSError)  # HTTPStatusError, and Prefect's, are HTTPErrors


def _api_error(error: Exception, block_name: str, verb: str) -> HotspareError:
    """An API failure as the operator's sentence (the request never carries the key's value)."""
    import httpx

    what = f"could not {verb} Prefect block {block_name!r} (StatusPageKey)"
    if isinstance(error, httpx.HTTPStatusError):
        status = error.response.status_code
        if status in (401, 403):
            return MissingConfiguration(
                f"{what}: this API login may not (HTTP {status}); the control site's login makes it on first use (docs/access.md)"
            )
        return TransientError(f"{what}: the Prefect API answered HTTP {status}")
    return TransientError(f"{what}: the Prefect API did not answer ({type(error).__name__})")
