"""``hotspare notice preview|send INCIDENT`` and ``hotspare status-page publish``: telling customers.

They run here, in this process, without a flow run: in an emergency the notice must not wait
for a worker. The SMTP relay and SSH login still come from the fleet's Prefect blocks.
"""

from __future__ import annotations

import argparse
import sys

from hotspare.commands.output import add_json_flag, print_json


def register(subparsers) -> None:
    notice = subparsers.add_parser("notice", help="e-mail the customers of the services an incident affects")
    actions = notice.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, help_text in (
        ("preview", "show who would get which notice, and whether policy sends it at once"),
        ("send", "send the notice (or resume one that was interrupted)"),
    ):
        parser = actions.add_parser(name, help=help_text)
        parser.add_argument("incident", type=int, help="incident number")
        parser.add_argument(
            "--kind",
            choices=("opened", "resolved"),
            default=None,
            help="which notice (default: resolved for a resolved incident, else opened)",
        )
        if name == "send":
            parser.add_argument(
                "--yes", action="store_true", help="approve the notice (needed when policy says preview-and-approve, or none)"
            )
            parser.add_argument("--rate", type=float, default=None, help="messages per second (default: the fleet's)")
        add_json_flag(parser, "the summary" if name == "send" else "the recipients, the decision and the first message")
        parser.set_defaults(func=preview_command if name == "preview" else send_command)

    automations = actions.add_parser(
        "automations", help="create or update the automations that send notices and publish the status page on incident events"
    )
    automations.set_defaults(func=automations_command)

    page = subparsers.add_parser("status-page", help="the off-site emergency status page")
    page_actions = page.add_subparsers(dest="action", required=True, metavar="ACTION")
    publish = page_actions.add_parser("publish", help="render the page and upload it to the web server")
    publish.add_argument("--incident", type=int, default=None, help="note the publication in this incident")
    add_json_flag(publish, "the publication's outcome")
    publish.set_defaults(func=publish_command)
    listen = page_actions.add_parser("subscriptions", help="serve the endpoint the customer pages' e-mail form posts to")
    listen.add_argument("--listen", default="127.0.0.1:8788", help="HOST:PORT to listen on")
    listen.set_defaults(func=subscriptions_command)


def _kind(args) -> str:
    if args.kind:
        return args.kind
    from hotspare.inventory.incidents import get_incident

    return "resolved" if get_incident(args.incident)["status"] == "resolved" else "opened"


def _incident_exists(number: int) -> None:
    from hotspare.adapters.errors import NotFound
    from hotspare.inventory.incidents import IncidentError, get_incident

    try:
        get_incident(number)
    except IncidentError as error:
        raise NotFound(str(error)) from None


def preview_command(args: argparse.Namespace) -> int:
    from hotspare.access import loaded_fleet
    from hotspare.inventory.models import utcnow
    from hotspare.planning.notices import render_body
    from tasks.notices import preview_notice

    _incident_exists(args.incident)
    fleet = loaded_fleet()
    plan, incident = preview_notice(args.incident, _kind(args), fleet=fleet)
    first = plan.recipients[0] if plan.recipients else None
    body = render_body(plan, first, incident, fleet.customer_notices) if first else None
    if args.json:
        print_json(
            {
                "notice": plan.notice_id,
                "incident": plan.incident_id,
                "kind": plan.kind,
                "subject": plan.subject,
                "services": list(plan.services),
                "may_send_now": plan.decision.go,
                "decision": plan.decision.reason,
                "recipients": [
                    {"email": item.email, "name": item.name, "customers": list(item.customers), "services": list(item.services)}
                    for item in plan.recipients
                ],
                "preview": plan.preview(),
                "first_message": body,
            }
        )
        return 0
    print(plan.preview())
    if first:
        print(f"\n--- message to {first.email} (composed {utcnow():%Y-%m-%d %H:%M} UTC) ---")
        print(f"Subject: {plan.subject}\n")
        print(body)
    return 0


def send_command(args: argparse.Namespace) -> int:
    import getpass
    import os

    from hotspare.adapters.errors import HotspareError
    from tasks.notices import send_notice

    _incident_exists(args.incident)
    operator = os.environ.get("HOTSPARE_OPERATOR") or getpass.getuser()
    from hotspare.commands.output import progress

    with progress(f"sending the notice of incident {args.incident}"):
        summary = send_notice(
            args.incident, _kind(args), approved_by=operator if args.yes else None, messages_per_second=args.rate
        )
    if args.json:
        print_json(summary)
    elif not summary["sent"]:
        print(f"{summary['notice']}: not sent: {summary['reason']}")
    else:
        print(f"{summary['notice']}: {summary['recipients']} recipients in {summary['seconds']} s")
        for state, addresses in summary["states"].items():
            print(f"  {state}: {', '.join(addresses)}")
    states = summary.get("states", {})
    if states.get("deferred") or states.get("pending"):
        print("some recipients are still waiting; run the same command again later to retry them", file=sys.stderr)
        raise HotspareError(f"{summary['notice']}: not every recipient was reached yet")
    return 0


def publish_command(args: argparse.Namespace) -> int:
    from hotspare.adapters.errors import HotspareError
    from hotspare.commands.output import progress
    from tasks.notices import publish_status_page

    with progress("rendering and uploading the status page"):
        result = publish_status_page(args.incident)
    if args.json:
        print_json(result)
    elif result.get("published"):
        from hotspare.commands.running import print_result

        print_result(result)
    if not result.get("published"):
        raise HotspareError(result.get("error") or result.get("reason") or "status page not published")
    return 0


def subscriptions_command(args: argparse.Namespace) -> int:
    import threading

    from hotspare.access import loaded_fleet
    from hotspare.subscription_webhook import serve

    host, _, port = args.listen.rpartition(":")
    server, _thread = serve(loaded_fleet(), host or "127.0.0.1", int(port))
    print(f"status page subscriptions on {args.listen}; Ctrl-C stops it")
    try:
        threading.Event().wait()
    finally:
        server.shutdown()
    return 0


def automations_command(args: argparse.Namespace) -> int:
    from flows.notices import ensure_automations

    for name in ensure_automations():
        print(f"automation ready: {name}")
    return 0
