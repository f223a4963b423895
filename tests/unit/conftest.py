"""The fast layer: tests that need no lab, no root and no server, so ``pytest tests/unit`` runs in
well under a minute on any machine, as any user.

A test here that asks for the session lab, its Prefect API, its fleet or its PostgreSQL fails at
once with the fix, instead of quietly starting (or, without root, skipping) the slow layer.
"""

from __future__ import annotations

import pytest

UNIT = __file__.rsplit("/", 1)[0]
# Seconds a unit test may take (pyproject.toml bounds lab tests at 15 minutes).
UNIT_TIMEOUT = 60
# Fixtures of tests/conftest.py and tests/postgres_helpers.py that start the lab or a server.
SLOW_FIXTURES = ("lab", "lab_env", "fleet", "prefect_api", "postgres_url")


def slow_layer_problem(item: pytest.Item) -> str | None:
    """Why ``item`` does not belong in tests/unit, or None when it does."""
    used = [name for name in SLOW_FIXTURES if name in getattr(item, "fixturenames", ())]
    if used:
        return f"uses {', '.join(used)}"
    if item.get_closest_marker("lab") is not None:
        return "is marked lab"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    problem = slow_layer_problem(item)
    if problem:
        pytest.fail(
            f"{item.nodeid} {problem}, which needs the lab or a server: tests/unit holds only tests "
            "that need none; move it to tests/ (next to the other lab tests)",
            pytrace=False,
        )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test in tests/unit gets the fast layer's time bound, unless it names its own or
    --timeout names one for the run."""
    if config.getoption("timeout", None) is not None:
        return
    for item in items:
        if str(item.path).startswith(UNIT + "/") and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(UNIT_TIMEOUT))
