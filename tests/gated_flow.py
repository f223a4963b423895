"""A flow that stops at hotspare's approval gate and prints who approved it (JSON on stdout).

Run by ``tests/test_access_roles.py`` as a separate process under a worker's API login, the way
a worker's flow-run process runs a gated runbook: ``python tests/gated_flow.py SUBJECT DIGEST``.
"""

from __future__ import annotations

import json
import sys

from prefect import flow

from flows.approval import await_approval


@flow(name="approval-gate-probe")
def gated(subject: str, digest: str) -> dict:
    approval = await_approval(subject, digest, f"the plan of {subject}", False, None, 120)
    return {"operator": approval.operator, "how": approval.how, "digest": approval.digest}


if __name__ == "__main__":
    print(json.dumps(gated(sys.argv[1], sys.argv[2])), flush=True)
