"""Prefect events, as a side channel: emitted best effort, never raised into the caller.

Automations (paging, customer notices, the status page) react to hotspare's events; a run that
emits one must not fail because the API is away (in an emergency, the API may be in the lost
facility). With no ``PREFECT_API_URL`` nothing is emitted: no server worth starting is there.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("hotspare.events")


def emit(event: str, resource: dict[str, str], payload: dict[str, Any] | None = None) -> bool:
    """Emit ``event`` about ``resource``; False (logged) when it could not be sent."""
    try:
        from prefect.events import emit_event
        from prefect.settings import PREFECT_API_URL

        if not PREFECT_API_URL.value():
            log.warning("no PREFECT_API_URL: %s about %s not emitted", event, resource.get("prefect.resource.id"))
            return False
        emit_event(event=event, resource=resource, payload=payload or {})
        return True
    except Exception as error:  # events are a side channel
        log.error("could not emit %s about %s: %s", event, resource.get("prefect.resource.id"), error)
        return False


def flush(timeout: float = 5.0) -> None:
    """Send buffered events before a short-lived process (a command) exits."""
    try:
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=timeout)
    except Exception as error:
        log.warning("events may not have been sent: %s", error)
