"""Serve every hotspare deployment from one process: ``hotspare serve`` (or ``python -m deployments.serve``).
At start it also creates or updates every automation (``deployments/automations.py``) and starts the
acknowledgement webhook (``hotspare/acknowledgements.py``) where the fleet's ``acknowledgement_url``
points, so a keypress 1 on a page call or an SMS "ACK N" acknowledges without another process.

The fleet is read from the inventory (``hotspare fleet load``), so schedules follow the fleet
file. In a fleet with several facilities, run one such process per facility (or use work pools
with ``prefect deploy``); the inventory lock keeps runs of one service exclusive across them.
"""

from __future__ import annotations


def all_deployments(fleet) -> list:
    """Every deployment: each module of this package (but this one) that has a
    ``deployments_for(fleet)`` function contributes its list; each is tagged with its group
    and ordered by group (``deployments/catalog.py``)."""
    import pkgutil
    from importlib import import_module

    import deployments
    from deployments.catalog import organise

    gathered = []
    for module in sorted(pkgutil.iter_modules(deployments.__path__), key=lambda module: module.name):
        if module.name == "serve":
            continue
        builder = getattr(import_module(f"deployments.{module.name}"), "deployments_for", None)
        if builder is not None:
            gathered += builder(fleet)
    return organise(gathered)


def make_automations(deployments: list) -> list[str]:
    """Register the deployments automations run, then make every automation (paging, notices).

    Never raises: what could not be made is the last sentence, and serving goes on, because
    the schedules and run buttons (failover first of all) never wait for paging or notices."""
    from deployments.automations import ensure_all_automations, register_automation_targets

    try:
        register_automation_targets(deployments)
        return ensure_all_automations(apply=True)
    except Exception as error:  # a side channel: serving the runbooks comes first
        return [f"automations not made (`hotspare automations apply` retries): {error}"]


def acknowledgement_listen(url: str | None, listen: str | None) -> tuple[tuple[str, int] | None, str]:
    """Where the acknowledgement webhook listens, and the sentence that says so or why not.

    ``listen`` (``hotspare serve --acknowledgements HOST:PORT``) wins; else the fleet's
    ``acknowledgement_url`` when its host is an address this machine can bind (an IP address or
    localhost, e.g. the lab's ``http://127.0.0.1:7480``); a public name is a proxy's business, so
    then the webhook needs ``--acknowledgements``. ``off`` turns it off."""
    from ipaddress import ip_address
    from urllib.parse import urlsplit

    if listen == "off":
        return None, "acknowledgement webhook off (--acknowledgements off)"
    if listen:
        host, _, port = listen.rpartition(":")
        if not port.isdigit():
            return None, f"acknowledgement webhook not started: --acknowledgements {listen!r} is not HOST:PORT"
        return (host or "127.0.0.1", int(port)), f"acknowledgement webhook on {host or '127.0.0.1'}:{port}"
    if not url:
        return None, "acknowledgement webhook not started: the fleet names no incidents.acknowledgement_url"
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        bindable = host == "localhost" or bool(ip_address(host))
    except ValueError:
        bindable = False
    if not bindable or parts.port is None:
        return None, (
            f"acknowledgement webhook not started: {url} is not an address:port of this machine; "
            f"start it with `hotspare serve --acknowledgements HOST:PORT` behind that URL"
        )
    return (host, parts.port), f"acknowledgement webhook on {host}:{parts.port} (the fleet's {url})"


def start_acknowledgements(fleet, listen: str | None = None):
    """The acknowledgement webhook in this process (a thread), or None with the reason logged.
    Never raises: serving the runbooks comes first, like the automations."""
    import logging
    import sys

    from hotspare.acknowledgements import serve as serve_webhook

    log = logging.getLogger("hotspare.serve")

    def say(level: int, sentence: str) -> None:  # in serve's own output too: its loggers print nothing by default
        log.log(level, "%s", sentence)
        print(f"hotspare serve: {sentence}", file=sys.stderr, flush=True)

    address, sentence = acknowledgement_listen(fleet.incidents.acknowledgement_url, listen)
    if address is None:
        say(logging.INFO if listen == "off" else logging.WARNING, sentence)
        return None
    try:
        server = serve_webhook(fleet, address[0], address[1])
    except OSError as error:
        say(
            logging.ERROR,
            f"acknowledgement webhook not started on {address[0]}:{address[1]}: "
            f"{error.strerror or error} (is another `hotspare serve` or `hotspare incident webhook` running?)",
        )
        return None
    say(logging.INFO, sentence)
    return server


def serve_forever(acknowledgements: str | None = None) -> None:
    """Make every automation, start the acknowledgement webhook, then serve every deployment
    until stopped."""
    import logging

    from prefect import serve

    from hotspare.access import loaded_fleet

    log = logging.getLogger("hotspare.serve")
    fleet = loaded_fleet()
    deployments = all_deployments(fleet)
    for sentence in make_automations(deployments):
        (log.error if sentence.startswith("automations not made") else log.info)("%s", sentence)
    webhook = start_acknowledgements(fleet, acknowledgements)
    try:
        serve(*deployments)
    finally:
        if webhook is not None:
            webhook.shutdown()
            webhook.server_close()


if __name__ == "__main__":
    serve_forever()
