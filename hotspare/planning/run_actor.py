"""Who a run's timeline names as its actor: behind the API proxy, the login that started it.

A runbook started from the Prefect UI or API (acknowledge, resolve, open an incident) takes a
free-text ``by``. Behind the proxy, nginx stamps every run with the identity that created it
(``planning/api_access.py``); a run a person or a worker created names that identity — "otto
(operator)" — and the typed name only as who it was done for ("for Dana Ops"), so nobody acts in
another's name. The control site's own commands keep the name they were given (its operator,
``HOTSPARE_OPERATOR``), and without the proxy (one machine, no logins) the typed name is all there
is. Pure: the run's provenance in, a name out.
"""

from __future__ import annotations

from hotspare.planning.api_access import CONTROL


def recorded_actor(typed: str, creator: tuple[str, str] | None, behind_proxy: bool) -> str:
    """The actor to record for a run whose ``by`` parameter is ``typed`` and whose creator the
    proxy stamped as ``creator`` (role, name)."""
    typed = typed.strip()
    if not behind_proxy or creator is None or creator[0] == CONTROL:
        return typed
    role, name = creator
    return f"{name} ({role})" + (f" for {typed}" if typed and typed not in (name, "operator") else "")
