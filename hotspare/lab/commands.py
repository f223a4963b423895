"""`hotspare lab ...`: start, inspect, break and stop the built-in lab.

    hotspare lab up [--slot N] [--dir D]   start (or return) the lab, print its env JSON
    hotspare lab down                      stop it and remove its network
    hotspare lab status [--json]           what runs, which hosts answer
    hotspare lab fail TARGET               make a host or facility time out
    hotspare lab heal TARGET               undo fail
    hotspare lab break HOST PART           fail a disk (RAID member), psu, fan or temp
    hotspare lab repair HOST PART          hot-replace the disk / make the BMC report it fixed
    hotspare lab env [--json]              print the env JSON
    hotspare lab blocks                    save the lab's Prefect blocks

The folder defaults to $HOTSPARE_LAB_DIR, else $HOTSPARE_HOME/lab ($HOTSPARE_HOME defaults
to ~/.hotspare). Every subcommand takes --dir and --slot; without --slot, a command uses
the slot of the folder's lab (if it has one), else slot 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from hotspare.lab.errors import LabError


def default_directory() -> Path:
    """$HOTSPARE_LAB_DIR, else $HOTSPARE_HOME/lab, else ~/.hotspare/lab."""
    if os.environ.get("HOTSPARE_LAB_DIR"):
        return Path(os.environ["HOTSPARE_LAB_DIR"]).absolute()
    home = os.environ.get("HOTSPARE_HOME") or str(Path.home() / ".hotspare")
    return Path(home).absolute() / "lab"


def register(subparsers) -> None:
    """Add `lab` and its subcommands; each sets func(args) -> exit code."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", type=Path, default=None, help="lab folder (default $HOTSPARE_LAB_DIR or $HOTSPARE_HOME/lab)")
    common.add_argument(
        "--slot",
        type=int,
        default=None,
        help="0-19: subnet 10.211.(70+N).0/24, DNS port 5390+N, SMTP port 2525+N (default: the running lab's slot, else 0)",
    )
    lab = subparsers.add_parser(
        "lab",
        help="the built-in lab of real hosts on this machine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = lab.add_subparsers(dest="lab_command", required=True, metavar="LAB_COMMAND")

    up = commands.add_parser("up", parents=[common], help="start the lab, print its env JSON")
    up.add_argument(
        "--workers",
        action="store_true",
        help="also the control site (Prefect server on PostgreSQL, inventory) and a "
        "Prefect worker per facility (hotspare/lab/workers.py)",
    )
    up.set_defaults(func=_up)
    down = commands.add_parser("down", parents=[common], help="stop the lab")
    down.set_defaults(func=_down)
    status = commands.add_parser("status", parents=[common], help="what runs, which hosts answer")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=_status)
    for name, function, verb in (("fail", _fail, "make unreachable (timeouts)"), ("heal", _heal, "make reachable again")):
        parser = commands.add_parser(name, parents=[common], help=f"{verb}: a host or a facility")
        parser.add_argument("target", metavar="TARGET", help="host name or facility name")
        parser.set_defaults(func=function)
    for name, function, verb in (
        ("break", _break, "make a part of a host fail"),
        ("repair", _repair, "repair a part broken with `lab break`"),
    ):
        parser = commands.add_parser(name, parents=[common], help=f"{verb} (disk, psu, fan, temp)")
        parser.add_argument("host", metavar="HOST", help="lab host name")
        parser.add_argument(
            "part",
            metavar="PART",
            choices=("disk", "psu", "fan", "temp"),
            help="disk (a RAID member), psu, fan or temp (what the BMC reports)",
        )
        parser.set_defaults(func=function)
    env = commands.add_parser("env", parents=[common], help="print the env JSON")
    env.add_argument("--json", action="store_true", help="print JSON (the default)")
    env.add_argument(
        "--exports",
        action="store_true",
        help="print `export NAME=VALUE` lines that point commands at the control site "
        '(`eval "$(hotspare lab env --exports)"`; needs `lab up --workers`)',
    )
    env.add_argument(
        "--as",
        dest="identity",
        metavar="NAME",
        help="with --exports: a person's own API login instead of the control site's "
        "(ada viewer, otto operator, april approver) and the read-only inventory user",
    )
    env.set_defaults(func=_env)
    blocks = commands.add_parser("blocks", parents=[common], help="save the lab's credentials as Prefect blocks")
    blocks.set_defaults(func=_blocks)


def _lab(args):
    """The Lab the arguments name; slot from --slot, else the folder's state, else 0."""
    from hotspare.lab.lab import Lab

    directory = args.dir.absolute() if args.dir else default_directory()
    slot = args.slot
    if slot is None:
        try:
            slot = int(json.loads((directory / "state.json").read_text())["slot"])
        except (OSError, ValueError, KeyError):
            slot = 0
    return Lab(directory, slot)


def _reporting_errors(function):
    """Print LabError as one line (exit 1) and send progress logs to stderr."""

    def wrapper(args) -> int:
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="lab: %(message)s", stream=sys.stderr)
        try:
            return function(args)
        except (LabError, KeyError, ValueError) as error:
            message = error.args[0] if isinstance(error, KeyError) and error.args else error
            print(f"hotspare lab: {message}", file=sys.stderr)
            return 1

    return wrapper


@_reporting_errors
def _up(args) -> int:
    lab = _lab(args)
    env = lab.up()
    if args.workers:
        from hotspare.lab.workers import start_workers

        start_workers(lab)
        env = _with_exports(lab, lab.env())
    print(json.dumps(env, indent=2))
    if args.workers:
        print(
            "lab: the control site runs its own Prefect server and inventory; point this shell's commands "
            f'at it with:\n  eval "$(hotspare lab env --exports --dir {lab.directory})"',
            file=sys.stderr,
        )
    return 0


def _with_exports(lab, env: dict) -> dict:
    """The env plus, when the control site runs, the exports that point commands at it."""
    from hotspare.lab import control

    if "control" in env and (control.folder(lab) / "client.json").exists():
        env = {**env, "exports": control.exports(lab)}
    return env


@_reporting_errors
def _down(args) -> int:
    _lab(args).down()
    return 0


@_reporting_errors
def _status(args) -> int:
    report = _lab(args).status()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_status(report))
    return 0 if report["up"] else 1


@_reporting_errors
def _fail(args) -> int:
    names = _lab(args).fail(args.target)
    print(f"failed: {', '.join(names)} (connections now time out)")
    return 0


@_reporting_errors
def _heal(args) -> int:
    names = _lab(args).heal(args.target)
    print(f"healed: {', '.join(names)}")
    return 0


@_reporting_errors
def _break(args) -> int:
    from hotspare.lab.hardware import break_part

    print(break_part(_lab(args), args.host, args.part))
    return 0


@_reporting_errors
def _repair(args) -> int:
    from hotspare.lab.hardware import repair_part

    print(repair_part(_lab(args), args.host, args.part))
    return 0


@_reporting_errors
def _env(args) -> int:
    import shlex

    lab = _lab(args)
    env = _with_exports(lab, lab.env())
    if not args.exports:
        print(json.dumps(env, indent=2))
        return 0
    if "exports" not in env:
        raise LabError(f"the lab in {lab.directory} has no control site; start it with `hotspare lab up --workers`")
    exports = env["exports"]
    if args.identity:  # a person's shell: their own login and nothing of the control site's
        from hotspare.lab import control

        exports = control.person_shell(lab, args.identity, exports)
        for name in control.SITE_ONLY:  # a shell that held the control site's exports loses them
            print(f"unset {name}")
    for name, value in exports.items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


@_reporting_errors
def _blocks(args) -> int:
    from hotspare.lab import issuer

    lab = _lab(args)
    certificates = bool(issuer.exports(lab))
    names = lab.register_blocks(ssh_key=not certificates)
    print(f"saved blocks: {', '.join(names)}")
    if certificates:
        print(
            "no SSH key block: the control site's issuer signs a certificate per run (docs/trust-model.md); "
            '`eval "$(hotspare lab env --exports)"` lets this shell\'s runs ask for theirs'
        )
    return 0


def format_status(report: dict) -> str:
    """A short human-readable status table."""
    if "hosts" not in report:
        return f"lab in {report['directory']} (slot {report['slot']}) is not up"
    lines = [f"lab in {report['directory']} (slot {report['slot']}): {'up' if report['up'] else 'DEGRADED'}"]
    for name, daemon in report["daemons"].items():
        lines.append(
            f"  {name:<22} pid {daemon['pid']:<8} {'running' if daemon['running'] else 'NOT RUNNING, see ' + daemon['log']}"
        )
    lines.append(f"  dns  127.0.0.1:{report['dns']['port']:<6} {'answering' if report['dns']['answering'] else 'NOT ANSWERING'}")
    lines.append(
        f"  smtp 127.0.0.1:{report['smtp']['port']:<6} {'answering' if report['smtp']['answering'] else 'NOT ANSWERING'}"
    )
    for name, host in report["hosts"].items():
        state = "failed on purpose" if host["failed"] else ("reachable" if host["reachable"] else "UNREACHABLE")
        lines.append(f"  {name:<14} {host['address']:<14} {host['facility']:<6} {host['role']:<11} {state}")
    for name, answering in report["apps"].items():
        lines.append(f"  app {name:<20} {'answering' if answering else 'not answering'}")
    return "\n".join(lines)
