"""What a person's browser meets at the lab's login proxy: no request fails for the proxy's own
reasons (the red "Something went wrong" toasts of the Prefect UI)."""

from __future__ import annotations

import re

from test_access_plans import render


def test_nginx_drops_idle_upstream_connections_before_the_prefect_server_does():
    """uvicorn closes a kept-alive connection after Prefect's keepalive timeout; nginx must not
    send a request on one the server is closing at that moment: that is a 502 nginx does not
    retry for a POST, and the UI's queries are POSTs (``POST /api/flow_runs/filter`` gave the
    deployments page its error toast)."""
    from prefect.settings import get_current_settings

    upstream = re.search(r"upstream prefect \{([^}]*)\}", render()).group(1)
    nginx_idle = int(re.search(r"keepalive_timeout (\d+)s;", upstream).group(1))
    assert nginx_idle < get_current_settings().server.api.keepalive_timeout
