"""``hotspare incident open|ack|note|resolve|publish|list|show|page|webhook|automations``: incidents by hand.

Opening announces ``hotspare.incident.opened`` (the paging automation starts the chain);
``page N`` walks the chain in this process instead. ``open --no-page`` only records: the
incident stays internal (no customer notice, not on the public status page) until ``publish N``. Bad input (an unknown incident, resolving
twice) is one message and exit 2.
"""

from __future__ import annotations

import argparse

from hotspare.commands.output import add_json_flag, print_json, print_table, say


def register(subparsers) -> None:
    incident = subparsers.add_parser("incident", help="open, acknowledge, note, resolve and list incidents")
    actions = incident.add_subparsers(dest="action", required=True, metavar="ACTION")

    opening = actions.add_parser("open", help="open an incident by hand (paging follows)")
    opening.add_argument("title")
    opening.add_argument(
        "--category",
        type=int,
        choices=(1, 2, 3),
        default=1,
        help="1 = a server, 2 = programming, 3 = a customer's day-to-day problem",
    )
    opening.add_argument("--severity", choices=("high", "low"), default="high")
    opening.add_argument("--service", action="append", default=[], help="affected service (repeatable)")
    opening.add_argument("--server", action="append", default=[], help="affected server (repeatable)")
    opening.add_argument("--by", default="operator", help="who opens it")
    opening.add_argument(
        "--no-page", action="store_true", help="record only: no paging, no customer notice, not on the status page (see publish)"
    )
    opening.set_defaults(func=open_command)

    publish = actions.add_parser(
        "publish", help="tell customers of an internal (record-only) incident: its notice goes out and the status page shows it"
    )
    publish.add_argument("incident", type=int)
    publish.add_argument("--by", required=True, help="who decides to publish it")
    publish.set_defaults(func=publish_command)

    ack = actions.add_parser("ack", help="acknowledge an incident (paging stops)")
    ack.add_argument("incident", type=int)
    ack.add_argument("--by", required=True, help="who takes it")
    ack.set_defaults(func=ack_command)

    note = actions.add_parser("note", help="add a note to an incident's timeline")
    note.add_argument("incident", type=int)
    note.add_argument("text")
    note.add_argument("--by", default="operator")
    note.add_argument("--public", action="store_true", help="written for customers: shown on the status page")
    note.set_defaults(func=note_command)

    resolve = actions.add_parser("resolve", help="resolve an incident")
    resolve.add_argument("incident", type=int)
    resolve.add_argument("--by", required=True)
    resolve.add_argument("--text", default="", help="what fixed it")
    resolve.set_defaults(func=resolve_command)

    listing = actions.add_parser("list", help="incidents, newest first")
    listing.add_argument("--open", action="store_true", help="only unresolved ones")
    add_json_flag(listing, "the incidents")
    listing.set_defaults(func=list_command)

    show = actions.add_parser("show", help="one incident with its timeline")
    show.add_argument("incident", type=int)
    add_json_flag(show, "the incident with its timeline")
    show.set_defaults(func=show_command)

    automations = actions.add_parser("automations", help="create the paging automations (idempotent)")
    automations.add_argument("--apply", action="store_true", help="create/update them (default: only say what would change)")
    automations.set_defaults(func=automations_command)

    webhook = actions.add_parser("webhook", help="serve the acknowledgement webhook (keypresses, SMS replies)")
    webhook.add_argument("--listen", default="127.0.0.1:8787", help="HOST:PORT to listen on")
    webhook.add_argument("--public-url", default=None, help="URL providers post to (default: the fleet's)")
    webhook.set_defaults(func=webhook_command)


def _checked(call):
    """Run an inventory call; an IncidentError becomes one bad-input message."""
    from hotspare.commands.errors import UsageError
    from hotspare.inventory.incidents import IncidentError

    try:
        return call()
    except IncidentError as error:
        raise UsageError(str(error)) from None


def open_command(args: argparse.Namespace) -> int:
    from hotspare.inventory import incidents

    opening = _checked(
        lambda: incidents.open_incident(
            args.category,
            args.severity,
            args.title,
            args.service,
            args.server,
            None,
            args.title,
            actor=args.by,
            internal=args.no_page,
        )
    )
    if args.no_page:
        print(
            f"recorded incident {opening.incident_id} (internal: no paging, no customer notice, not on the status "
            f"page; `hotspare incident publish {opening.incident_id} --by NAME` tells customers)"
        )
        return 0
    from hotspare.adapters.events import flush as flush_events
    from hotspare.inventory.incidents import announce

    announce("opened", opening.incident_id)
    flush_events()
    print(f"opened incident {opening.incident_id}")
    return 0


def publish_command(args: argparse.Namespace) -> int:
    """Make an internal incident public, then announce it without paging: the notice automation
    sends its notice (the resolution notice when it is already resolved) and the page shows it."""
    from hotspare.adapters.events import flush as flush_events
    from hotspare.inventory import incidents
    from hotspare.inventory.incidents import announce

    changed = _checked(lambda: incidents.publish(args.incident, args.by))
    if not changed:
        print(f"incident {args.incident} is public already; nothing changed")
        return 0
    resolved = incidents.get_incident(args.incident)["status"] == "resolved"
    announce("resolved" if resolved else "opened", args.incident, paging="published")
    flush_events()
    print(
        f"incident {args.incident} published by {args.by}: its {'resolution' if resolved else 'opening'} notice "
        f"follows (`hotspare notice preview {args.incident}` shows to whom) and the status page shows it"
    )
    return 0


def ack_command(args: argparse.Namespace) -> int:
    from hotspare.inventory import incidents

    first = _checked(lambda: incidents.acknowledge(args.incident, args.by, via="command line"))
    if first:
        from hotspare.adapters.events import flush as flush_events
        from hotspare.inventory.incidents import announce

        announce("acknowledged", args.incident)
        flush_events()
    print(
        f"incident {args.incident} acknowledged by {args.by}"
        if first
        else f"incident {args.incident} was already acknowledged; noted"
    )
    return 0


def note_command(args: argparse.Namespace) -> int:
    from hotspare.inventory import incidents

    details = {"public": True} if args.public else None
    _checked(lambda: incidents.add_event(args.incident, "note", args.text, actor=args.by, details=details))
    print(f"noted on incident {args.incident}")
    return 0


def resolve_command(args: argparse.Namespace) -> int:
    from hotspare.adapters.events import flush as flush_events
    from hotspare.inventory import incidents
    from hotspare.inventory.incidents import announce

    _checked(lambda: incidents.resolve(args.incident, args.by, args.text))
    announce("resolved", args.incident)
    flush_events()
    print(f"incident {args.incident} resolved by {args.by}")
    return 0


def list_command(args: argparse.Namespace) -> int:
    from hotspare.inventory import incidents
    from hotspare.planning.ages import moment_text

    rows = incidents.list_incidents(open_only=args.open)
    if args.json:
        print_json({"incidents": rows})
        return 0
    print_table(
        ("ID", "CAT", "SEVERITY", "STATUS", "OPENED", "TITLE", "AFFECTS"),
        [
            (
                row["id"],
                row["category"],
                row["severity"],
                row["status"],
                moment_text(row["opened_at"]),
                row["title"],
                ", ".join(row["servers"] + row["services"]) or "-",
            )
            for row in rows
        ],
        empty="no open incidents" if args.open else "no incidents",
    )
    return 0


def show_command(args: argparse.Namespace) -> int:
    from hotspare.inventory import incidents
    from hotspare.planning.ages import moment_text

    incident = _checked(lambda: incidents.get_incident(args.incident))
    if args.json:
        print_json(incident)
        return 0
    say(f"incident {incident['id']}: {incident['title']}")
    say(
        f"  category {incident['category']} ({incident['category_name']}), {incident['severity']} severity, "
        f"{incident['status']}" + (f" by {incident['acknowledged_by']}" if incident["acknowledged_by"] else "")
    )
    say(f"  servers: {', '.join(incident['servers']) or '-'}; services: {', '.join(incident['services']) or '-'}")
    for impact in incident["impact"]:
        held = f" on {impact['server']}" if impact["server"] else ""
        say(f"  affects {impact['service']} ({impact['role']}{held}): {impact['effect']}")
    if incident["internal"]:
        say(f"  internal: customers are not told (hotspare incident publish {incident['id']} --by NAME)")
    print_table(
        ("AT", "EVENT", "BY", "WHAT"),
        [(moment_text(event["at"], seconds=True), event["kind"], event["actor"], event["text"]) for event in incident["events"]],
        title="Timeline",
    )
    return 0


def automations_command(args: argparse.Namespace) -> int:
    from deployments.incidents import ensure_automations

    for sentence in ensure_automations(args.apply):
        print(sentence)
    return 0


def webhook_command(args: argparse.Namespace) -> int:
    import threading

    from hotspare.access import loaded_fleet
    from hotspare.acknowledgements import serve

    host, _, port = args.listen.rpartition(":")
    server = serve(loaded_fleet(), host or "127.0.0.1", int(port), args.public_url)
    print(f"acknowledgement webhook on {args.listen}; Ctrl-C stops it")
    try:
        threading.Event().wait()
    finally:
        server.shutdown()
    return 0
