"""The run's logger where there is a run, a plain one where there is none.

Tasks and flow bodies are also called outside any Prefect run (benchmarks, tests calling
``flow.fn``, the paging walk from a webhook): there ``get_run_logger`` raises, and a decision
still has to be a logged sentence.
"""

from __future__ import annotations

import logging

from prefect import get_run_logger
from prefect.exceptions import MissingContextError


def run_logger(fallback: str):
    """``get_run_logger()`` inside a flow or task run; the ``fallback`` module logger outside."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(fallback)
