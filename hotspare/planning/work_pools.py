"""The job template of hotspare's work pools: nothing a run's creator sends changes what runs.

A Prefect process pool's default template lets whoever creates a flow run set the run's
``command``, ``env`` and ``working_dir`` (job variables): an operator allowed to start runs
could start ``sh -c ANYTHING`` as the worker, with its API login, its issuer token and every
block it may read, or point ``HOTSPARE_SSH_ISSUER_URL`` at a server of theirs. hotspare's pools
use this template instead: the command is the worker's own (the flow run from its deployment),
the environment is fixed, and the one variable a submitter may set is who they say they are
(``operator``: a name, recorded on the run; behind the API proxy the proxy's record of who
started the run counts, not this). The Prefect server refuses any other job variable
(``additionalProperties: false``) when a run is created or changed; the worker builds the
command from this template, whatever a run carries.
"""

from __future__ import annotations

import re
from typing import Any

OPERATOR_PATTERN = r"^[A-Za-z0-9 ._@-]{0,64}$"


def locked_job_template(project: str) -> dict[str, Any]:
    """The base job template for every hotspare pool; ``project`` is the code's folder, the
    same path on every worker machine (docs/operations.md)."""
    return {
        "job_configuration": {
            "command": None,
            "env": {"PYTHONPATH": project, "HOTSPARE_OPERATOR": "{{ operator }}"},
            "labels": {},
            "name": None,
            "stream_output": True,
            "working_dir": None,
        },
        "variables": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "operator": {
                    "type": "string",
                    "pattern": OPERATOR_PATTERN,
                    "default": "",
                    "title": "Operator",
                    "description": "Who submitted the run (a name, at most 64 letters, digits, spaces or ._@-).",
                },
            },
        },
    }


def operator_variable(name: str) -> dict[str, str]:
    """The job variables of a run submitted by ``name``, made to fit the template's pattern."""
    return {"operator": re.sub(r"[^A-Za-z0-9 ._@-]", "-", name)[:64]}
