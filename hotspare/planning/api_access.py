"""Who may do what on the Prefect API: identities, roles, and the nginx configuration that
enforces them in front of the Prefect server.

Prefect's open-source server knows one shared auth string and no users. hotspare puts nginx (a
well-kept authenticating reverse proxy) in front of it: every person and every worker logs in
with its own name and password (HTTP basic auth, checked by nginx against an htpasswd file), and
nginx decides from the name's role, the method and the path whether the request reaches the
server. The server itself listens on the control host's loopback only, without an auth string of
its own: Prefect 3's websockets (``/api/events/in``, which every run's process opens) authenticate
in-band with the server's own string, which a proxy cannot substitute, so nginx strips each
client's ``Authorization`` and is the only authentication. Pure: identities in, configuration
text out.

Roles (``ROLE_RULES``):

- **viewer** reads runs, logs, artifacts, deployments, pools — nothing that writes.
- **operator** also starts deployment runs (``POST /deployments/{id}/create_flow_run``).
- **approver** also resumes a paused run (``POST /flow_runs/{id}/resume``): the approval gate.
  Setting a run's state directly (``set_state``, which can resume too) is for no person.
- **worker** executes runs: creates flow and task runs, sets their states, writes logs,
  artifacts, run inputs and events, polls its pool; it cannot resume a paused run, start
  deployment runs, or write deployments, blocks, automations, pools or variables.
- **control** (the control site's own commands and worker) may do everything.

Secrets (``include_secrets``): Prefect hands a block's secret values to whoever asks with
``include_secrets=true``. nginx lets such a request through only for the control identity and
for a worker on the block documents named in its ``blocks`` (read by name, the exact query
``include_secrets=true`` that ``Block.load`` sends). Every other request that could return
secrets — a query string on a block document path, ``POST /block_documents/filter`` (its body
can ask for secrets, and nginx does not read bodies), listing a type's documents — is refused,
and so people never read a secret (the UI's Blocks page stays empty for them).

The approver's name reaches the run two ways, both set by nginx from the authenticated name
(``$remote_user``), never from what the client sent:

- **At the gate**: before a resume is passed on, nginx itself stores a run input
  ``hotspare-approver-<request id>`` holding the approver's name on that run (an
  ``auth_request`` subrequest: if it fails, the resume is refused). The flow takes the newest
  such record made before the answer it received.
- **Up front** (``yes``, ``approved_plan_digest``): every object created through the proxy
  carries Prefect's ``created_by`` provenance, which the server fills from the
  ``Prefect-Automation-Id``/``-Name`` headers: nginx overwrites both with the identity
  (``hotspare:<role>:<name>``), so a run knows which identity started it and an up-front
  approval counts only from an approver (or the control site).

Paths are compared as nginx normalises them; a request whose raw path holds ``//``, a dot
segment or an encoded ``/``, ``.`` or ``\\`` is refused first, so nginx and the server see the
same path.
"""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass
from datetime import datetime

VIEWER, OPERATOR, APPROVER, WORKER, CONTROL = "viewer", "operator", "approver", "worker", "control"
PEOPLE_ROLES = (VIEWER, OPERATOR, APPROVER)
ROLES = (*PEOPLE_ROLES, WORKER, CONTROL)
# Who may approve a gated run up front (a parameter of the run it starts).
UP_FRONT_APPROVER_ROLES = (APPROVER, CONTROL)
PROVENANCE_PREFIX = "hotspare"
APPROVER_RECORD_PREFIX = "hotspare-approver-"
_NAMESPACE = uuid.UUID("6f1d2a4e-3c55-4d0b-9a57-3f2a1c8b7e10")
_NAME = re.compile(r"^[a-z][a-z0-9._-]{0,62}$")
_BLOCK_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")

_ID = r"[0-9a-f-]{36}"
# Requests that only read: every GET, and the POSTs that are queries.
READ = (
    r"GET\|(?!/api/events/in$).*",  # events/in: emitting events, which automations act on
    r"POST\|/api/(.+/)?(filter|count|paginate|history|lateness)",
    r"POST\|/api/(.+/)?count-by/.*",
    r"POST\|/api/ui/.*",
)
START_RUNS = (rf"POST\|/api/deployments/{_ID}/create_flow_run",)
RESUME = (rf"POST\|/api/flow_runs/{_ID}/resume",)
EXECUTE = (
    r"POST\|/api/flows/?",
    r"POST\|/api/flow_runs/?",
    rf"PATCH\|/api/flow_runs/{_ID}",
    rf"POST\|/api/flow_runs/{_ID}/(set_state|labels|input)",
    rf"(PATCH|DELETE)\|/api/flow_runs/{_ID}/labels",
    rf"DELETE\|/api/flow_runs/{_ID}/input/[^/]+",
    r"POST\|/api/task_runs/?",
    rf"POST\|/api/task_runs/{_ID}/set_state",
    rf"PATCH\|/api/task_runs/{_ID}",
    r"POST\|/api/logs/?",
    r"POST\|/api/artifacts/?",
    rf"PATCH\|/api/artifacts/{_ID}",
    r"POST\|/api/events/?",
    r"GET\|/api/events/in",
    r"POST\|/api/work_pools/[^/]+/(get_scheduled_flow_runs|workers/heartbeat)",
    r"POST\|/api/deployments/get_scheduled_flow_runs",
    r"POST\|/api/(v2/)?concurrency_limits/.*",
    r"POST\|/api/task_workers/.*",
)
ROLE_RULES: dict[str, tuple[str, ...]] = {
    VIEWER: READ,
    OPERATOR: READ + START_RUNS,
    APPROVER: READ + START_RUNS + RESUME,
    WORKER: READ + EXECUTE,
    CONTROL: (r".*",),
}
# Paths whose answers can carry secret values; only the rules of ``secret_rules`` open them.
SECRET_PATHS = r"/api/block_documents(/.*)?|/api/block_types/slug/[^/]+/block_documents(/.*)?"


@dataclass(frozen=True)
class Identity:
    """One login: a person (viewer, operator, approver) or a site's process (worker, control).
    ``blocks``: the block documents a worker may read with their secrets."""

    name: str
    role: str
    blocks: tuple[str, ...] = ()

    def problems(self) -> list[str]:
        found = []
        if not _NAME.match(self.name):
            found.append(
                f"identity {self.name!r}: a name is lower-case letters, digits, '.', '_', '-' "
                f"(starting with a letter, at most 63)"
            )
        if self.role not in ROLES:
            found.append(f"identity {self.name!r}: role {self.role!r} is not one of {', '.join(ROLES)}")
        if self.blocks and self.role != WORKER:
            found.append(f"identity {self.name!r}: only a worker is given blocks (control reads all, people none)")
        found += [
            f"identity {self.name!r}: block name {block!r} is not a plain block name"
            for block in self.blocks
            if not _BLOCK_NAME.match(block)
        ]
        return found


def provenance(identity: Identity) -> str:
    """The ``created_by`` display value nginx stamps on what this identity creates."""
    return f"{PROVENANCE_PREFIX}:{identity.role}:{identity.name}"


def parse_provenance(display_value: str | None) -> tuple[str, str] | None:
    """(role, name) from a ``created_by`` display value nginx stamped, else None."""
    prefix, _, rest = (display_value or "").partition(":")
    role, _, name = rest.partition(":")
    if prefix != PROVENANCE_PREFIX or role not in ROLES or not _NAME.match(name):
        return None
    return role, name


def provenance_id(identity: Identity) -> str:
    return str(uuid.uuid5(_NAMESPACE, identity.name))


def approver_from_records(records: list[tuple[str, datetime, object]], answered_at: datetime) -> str | None:
    """The approver of an answer: the newest ``(key, created, value)`` approver record made at
    or before ``answered_at`` (nginx stores one, before passing each approver's resume on)."""
    made = [
        (created, value) for key, created, value in records if key.startswith(APPROVER_RECORD_PREFIX) and created <= answered_at
    ]
    if not made:
        return None
    name = max(made, key=lambda item: item[0])[1]
    return name if isinstance(name, str) and _NAME.match(name) else None


def secret_rules(identities: list[Identity]) -> list[str]:
    """``map`` lines deciding the secret paths, first match wins (see the module docstring)."""
    lines = []
    for identity in identities:
        if identity.role == CONTROL:
            lines.append(f'    "~^{re.escape(identity.name)}\\|[^|]*\\|({SECRET_PATHS})\\|" prefect;')
        elif identity.blocks:
            names = "|".join(re.escape(block) for block in identity.blocks)
            lines.append(
                f'    "~^{re.escape(identity.name)}\\|GET\\|/api/block_types/slug/[^/]+/block_documents/'
                f'name/({names})\\|include_secrets=true$" prefect;'
            )
    # without a query string a document's secret fields come back masked
    lines.append('    "~^[^|]+\\|GET\\|/api/block_types/slug/[^/]+/block_documents/name/[^/]+\\|$" allowed;')
    lines.append(rf'    "~^[^|]+\|GET\|/api/block_documents/{_ID}\|$" allowed;')
    lines.append(f'    "~^[^|]*\\|[^|]*\\|({SECRET_PATHS})\\|" refused;')
    return lines


def render_nginx(identities: list[Identity], *, listen: str, upstream: str, folder: str, user: str = "www-data") -> str:
    """The whole nginx configuration (foreground, its own pid, logs and temp folders in ``folder``)."""
    problems = [problem for identity in identities for problem in identity.problems()]
    names = [identity.name for identity in identities]
    problems += [f"identity {name!r} is listed twice" for name in sorted(set(names)) if names.count(name) > 1]
    if problems:
        raise ValueError("; ".join(problems))
    roles = "\n".join(f'    "{identity.name}" {identity.role};' for identity in identities)
    provenance_names = "\n".join(
        f'    "{identity.name}" "{base64.b64encode(provenance(identity).encode()).decode()}";' for identity in identities
    )
    provenance_ids = "\n".join(f'    "{identity.name}" "{provenance_id(identity)}";' for identity in identities)
    role_rules = "\n".join(f'    "~^{role}\\|({rule})$" prefect;' for role, rules in ROLE_RULES.items() for rule in rules)
    secrets = "\n".join(secret_rules(identities))
    return f"""# Generated by hotspare (planning/api_access.py); every identity's role and readable blocks.
daemon off;
master_process on;
worker_processes 1;
user {user};
pid {folder}/nginx.pid;
error_log {folder}/error.log notice;
events {{ worker_connections 512; }}
http {{
  log_format identity '$time_iso8601 $remote_addr "$remote_user" "$request" $status $body_bytes_sent $request_time';
  access_log {folder}/access.log identity;
  client_body_temp_path {folder}/tmp/body;
  proxy_temp_path {folder}/tmp/proxy;
  fastcgi_temp_path {folder}/tmp/fastcgi;
  uwsgi_temp_path {folder}/tmp/uwsgi;
  scgi_temp_path {folder}/tmp/scgi;
  client_max_body_size 64m;
  server_tokens off;
  underscores_in_headers off;

  map $remote_user $hotspare_role {{
    default "";
{roles}
  }}
  map $remote_user $hotspare_provenance_name {{
    default "";
{provenance_names}
  }}
  map $remote_user $hotspare_provenance_id {{
    default "";
{provenance_ids}
  }}
  # secret-bearing paths first: prefect (pass), refused, or allowed (then the role decides)
  map "$remote_user|$request_method|$uri|$args" $hotspare_secrets {{
    default allowed;
{secrets}
  }}
  map "$hotspare_role|$request_method|$uri" $hotspare_by_role {{
    default refused;
{role_rules}
  }}
  map "$hotspare_secrets" $hotspare_backend {{
    prefect prefect;
    refused refused;
    default $hotspare_by_role;
  }}
  map $http_upgrade $hotspare_connection {{
    default upgrade;
    "" "";
  }}

  # Idle upstream connections close on nginx's side first: the Prefect server (uvicorn) closes a
  # kept-alive connection after 5 s, and a request nginx sends on one it just closed is a 502 it
  # does not retry for a POST (the UI's queries are POSTs: red "Something went wrong" toasts).
  upstream prefect {{ server {upstream}; keepalive 16; keepalive_timeout 3s; }}
  upstream refused {{ server unix:{folder}/refused.sock; }}

  server {{
    listen unix:{folder}/refused.sock;
    default_type application/json;
    location / {{ return 403 '{{"detail": "refused by the hotspare API proxy: your role may not do this"}}\\n'; }}
  }}

  server {{
    listen {listen};
    auth_basic "hotspare";
    auth_basic_user_file {folder}/htpasswd;
    proxy_http_version 1.1;
    proxy_set_header Host $host;
    proxy_set_header Authorization "";  # a person's password goes no further than nginx
    proxy_set_header Prefect-Automation-Id $hotspare_provenance_id;
    proxy_set_header Prefect-Automation-Name $hotspare_provenance_name;
    proxy_set_header Upgrade $http_upgrade;
    proxy_set_header Connection $hotspare_connection;
    proxy_read_timeout 3600s;

    # one path for nginx and the server: no empty or dot segments, no encoded separators
    if ($request_uri ~ "^[^?]*(//|/\\.|%2[eEfF]|%5[cC])") {{ return 400; }}

    location = /api/health {{ auth_basic off; proxy_pass http://prefect; }}
    location = /api/ready {{ auth_basic off; proxy_pass http://prefect; }}

    location ~ "^/api/flow_runs/(?<hotspare_run>{_ID})/resume$" {{
      # the approver's name, stored on the run by the proxy before the resume goes on
      set $hotspare_resume $hotspare_backend;  # seen by the subrequest (it shares variables)
      auth_request /hotspare-approver-record;
      proxy_pass http://$hotspare_backend;
    }}
    location = /hotspare-approver-record {{
      internal;
      if ($hotspare_resume != prefect) {{ return 403; }}
      proxy_method POST;
      proxy_pass_request_body off;
      # proxy_set_header here replaces the server's list: the upstream login again, JSON, nothing else
      proxy_set_header Authorization "";  # a person's password goes no further than nginx
      proxy_set_header Content-Type application/json;
      proxy_set_body '{{"key": "{APPROVER_RECORD_PREFIX}$request_id", "value": "\\\\"$remote_user\\\\""}}';
      proxy_pass http://prefect/api/flow_runs/$hotspare_run/input;
    }}
    location / {{
      proxy_pass http://$hotspare_backend;
    }}
  }}
}}
"""
