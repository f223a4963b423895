"""Write a complete, commented fleet file from the schema itself (``hotspare fleet sample``).

Like borgmatic's generated sample configuration: every field of every section appears, each
preceded by its description, so the sample can never lag behind the schema. Values come from a
small coherent example (``EXAMPLE``: one service with its production, mirror and storage),
else from the field's default; fields that have neither (optional settings) appear commented
out with a placeholder. The uncommented part is a valid fleet file (a test loads it), and
``docs/fleet-example.yaml`` is this module's output (a test compares them).
"""

from __future__ import annotations

import textwrap
import types
import typing
from enum import Enum

import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from hotspare.fleet.schema import Fleet

WIDTH = 100
HEADER = """\
A fleet file: the written continuity plan, kept in the operators' git.
Generated from the schema by `hotspare fleet sample`: every field, with its meaning. Lines that
start with '# ' followed by a field are optional settings shown with a placeholder.
`hotspare fleet check FILE` validates a fleet file; `hotspare fleet load FILE` imports it.
Credentials appear only as Prefect block names, never as secrets."""

_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExampl"
EXAMPLE: dict = {
    "version": 1,
    "facilities": [
        {"name": "east", "description": "Commercial data center, east campus"},
        {"name": "west", "description": "Commercial data center, west campus"},
        {"name": "vault", "description": "Backup storage facility"},
    ],
    "defaults": {"ssh_user_block": "fleet-ssh"},
    "servers": [
        {
            "name": "prod-east",
            "facility": "east",
            "address": "10.211.77.11",
            "host_key": _KEY + "1",
            "role": "production",
            "hardware": {"cpus": 2, "memory_mb": 2048, "disk_gb": 40},
        },
        {
            "name": "mirror-west",
            "facility": "west",
            "address": "10.211.77.12",
            "host_key": _KEY + "2",
            "role": "mirror",
            "hardware": {"cpus": 2, "memory_mb": 2048, "disk_gb": 40},
        },
        {
            "name": "storage-vault",
            "facility": "vault",
            "address": "10.211.77.31",
            "host_key": _KEY + "3",
            "role": "storage",
            "ssh_user_block": "storage-ssh",
        },
    ],
    "zones": [{"name": "example.test", "server": "10.211.77.53", "tsig_key_block": "fleet-tsig"}],
    "services": [
        {
            "name": "app1",
            "dns_name": "app1.example.test",
            "zone": "example.test",
            "production": "prod-east",
            "mirror": "mirror-west",
            "storage": "storage-vault",
            "data_paths": ["/srv/app1/data"],
            "app_paths": ["/srv/app1/app"],
            "config_paths": ["/etc/app1"],
            "accounts": {"uid_min": 2000, "uid_max": 2999, "files": ["/srv/app1/accounts"], "users": ["app1-web", "app1-batch"]},
            "allow_special": [{"path": "/srv/app1/app/bin/ping-helper", "allow": ["capabilities"]}],
            "pre_sync": [["/srv/app1/app/dump-db", "--quick"]],
            "activate": [["/srv/app1/app/ctl", "start"]],
            "deactivate": [["/srv/app1/app/ctl", "stop"]],
            "health_url": "http://app1.example.test:8080/health.txt",
            "app_port": 8080,
            "tier": 1,
            "exclude": ["/srv/app1/data/cache", "*.sock"],
            "fuzzy": ["*.log"],
            "backup": {"password_block": "fleet-restic-app1"},
        },
    ],
    "contacts": [{"name": "Dana Ops", "role": "on-call engineer", "phone": "+15550100", "email": "dana@example.test"}],
    "escalation": ["Dana Ops"],
    "mail": {"smtp_block": "fleet-smtp", "sender": "hotspare@example.test"},
}


def sample_fleet_file(example: dict | None = None) -> str:
    """The commented sample fleet file as text."""
    lines = [f"# {line}".rstrip() for line in HEADER.splitlines()]
    lines += _model_lines(Fleet, EXAMPLE if example is None else example, indent=0, commented=False)
    return "\n".join(lines) + "\n"


def field_paths(model: type[BaseModel] = Fleet, prefix: str = "") -> list[str]:
    """Dotted paths of every field of ``model`` and of the sections inside it."""
    paths = []
    for name, info in model.model_fields.items():
        paths.append(prefix + name)
        inner = _section_type(info.annotation) or _list_item_type(info.annotation)
        if inner is not None:
            paths += field_paths(inner, f"{prefix}{name}.")
    return paths


def _model_lines(model: type[BaseModel], values: dict | None, indent: int, commented: bool, first_prefix: str = "") -> list[str]:
    """Lines for every field of ``model``; ``first_prefix`` ("- ") starts a list item."""
    lines: list[str] = []
    for position, (name, info) in enumerate(model.model_fields.items()):
        pad = " " * indent
        lead = first_prefix if position == 0 else " " * len(first_prefix)
        description = info.description or _doc_line(_section_type(info.annotation))
        if description:
            for text in textwrap.wrap(description, WIDTH - indent - 2 - len(lead)):
                lines.append(f"{pad}{' ' * len(lead)}# {text}")
        present, value = _value_of(info, values, name)
        off = commented or not present
        lines += _field_lines(name, info.annotation, value, present, indent, lead, off)
    return lines


def _field_lines(name: str, annotation, value, present: bool, indent: int, lead: str, off: bool) -> list[str]:
    section = _section_type(annotation)
    listed = _list_item_type(annotation)
    child = indent + len(lead) + 2
    if section is not None and (present or value is None):
        return [_key_line(name, "", indent, lead, off)] + _model_lines(section, value if present else None, child, off)
    if listed is not None:
        if present and value:
            lines = [_key_line(name, "", indent, lead, off)]
            for item in value:
                lines += _model_lines(listed, item, child, off, first_prefix="- ")
            return lines
        # No items: an empty list (valid as it stands), then one item's fields commented out.
        lines = [_key_line(name, "" if off else "[]", indent, lead, off)]
        return lines + _model_lines(listed, None, child, True, first_prefix="- ")
    shown = _flow(value) if present else _placeholder(annotation)
    return [_key_line(name, shown, indent, lead, off)]


def _key_line(name: str, shown: str, indent: int, lead: str, off: bool) -> str:
    """``name: shown`` at its place; commented-out lines keep the '#' at the field's column."""
    pad = " " * indent
    tail = f"{name}: {shown}" if shown else f"{name}:"
    if lead == "- ":
        return f"{pad}{'# ' if off else ''}- {tail}"
    return f"{pad}{lead}{'# ' if off else ''}{tail}"


def _value_of(info, values: dict | None, name: str) -> tuple[bool, object]:
    """(present, value): the example's value, else a meaningful default, else absent."""
    if values is not None and name in values:
        return True, values[name]
    if values is None:
        return False, None
    if info.default_factory is not None:
        default = info.default_factory()
    elif info.default is not PydanticUndefined:
        default = info.default
    else:
        return False, None
    if default is None or default == [] or default == {}:
        return False, None
    if isinstance(default, BaseModel):
        return True, default.model_dump(mode="json")
    return True, default.value if isinstance(default, Enum) else default


def _section_type(annotation) -> type[BaseModel] | None:
    """The model a field holds directly (``Model`` or ``Model | None``), else None."""
    for candidate in _union_members(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _list_item_type(annotation) -> type[BaseModel] | None:
    """The model of a ``list[Model]`` field, else None."""
    for candidate in _union_members(annotation):
        if typing.get_origin(candidate) is list:
            (item,) = typing.get_args(candidate) or (None,)
            if isinstance(item, type) and issubclass(item, BaseModel):
                return item
    return None


def _union_members(annotation) -> tuple:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return tuple(member for member in typing.get_args(annotation) if member is not type(None))
    return (annotation,)


def _placeholder(annotation) -> str:
    """A hint of the expected form for an optional field shown commented out."""
    member = _union_members(annotation)[0]
    origin = typing.get_origin(member)
    if origin is list:
        return "[]"
    if origin is dict:
        return "{}"
    if typing.get_origin(member) is typing.Annotated:
        member = typing.get_args(member)[0]
    if isinstance(member, type) and issubclass(member, Enum):
        return " | ".join(item.value for item in member)
    return {int: "0", float: "1.0", bool: "false"}.get(member, "<text>")


def _flow(value) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, allow_unicode=True).strip()
    return text[: -len("\n...")].strip() if text.endswith("\n...") else text


def _doc_line(model: type[BaseModel] | None) -> str:
    """First sentence of a section model's docstring (for fields without a description)."""
    if model is None or not model.__doc__:
        return ""
    return " ".join(model.__doc__.strip().split("\n\n")[0].split())
