"""The API login on the event stream's websocket upgrade, for the worker and its runs.

Prefect 3.9's event stream subscriber (``prefect.events.clients.PrefectEventSubscriber``, used by
the worker's push channel and by Prefect's own cancellation and suspension observers in every
worker and run) sends the API login only in-band, after the websocket upgrade. In front of the
server sits nginx, which authenticates every request with HTTP basic auth (docs/access.md), so
it refuses that upgrade (HTTP 401) and the observers fall back to polling the API every few
seconds, per run. Prefect's event *sender* already sends the login on the upgrade as basic auth;
``send_login_on_upgrade`` makes the subscriber do the same, in this process only.
"""

from __future__ import annotations

_PATCHED = "_hotspare_login_on_upgrade"


def send_login_on_upgrade() -> None:
    """Make every event stream subscriber of this process send the API login on the upgrade."""
    from prefect.events import clients

    subscriber_class = clients.PrefectEventSubscriber
    if getattr(subscriber_class, _PATCHED, False):
        return
    original = subscriber_class.__init__

    def __init__(self, *args, **kwargs) -> None:
        original(self, *args, **kwargs)
        if self._auth_token and type(self) is subscriber_class:  # Prefect Cloud's subclass uses an API key
            from prefect._internal.websockets import websocket_connect
            from websockets import Subprotocol

            header = {"Authorization": f"Basic {clients._basic_auth_token(self._auth_token)}"}
            self._connect = websocket_connect(
                clients.events_out_socket_from_api_url(self._api_url),
                subprotocols=[Subprotocol("prefect")],
                additional_headers=header,
            )

    subscriber_class.__init__ = __init__  # type: ignore[method-assign]  # the login on the upgrade too
    setattr(subscriber_class, _PATCHED, True)
