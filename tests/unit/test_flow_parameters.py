"""The Prefect UI explains every field: each flow parameter and each approval field has a
description, and flows that share a meaning share a name."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import flows


def every_flow():
    from prefect.flows import Flow

    found = []
    for module_info in pkgutil.iter_modules(flows.__path__):
        module = importlib.import_module(f"flows.{module_info.name}")
        for value in vars(module).values():
            if isinstance(value, Flow) and value.fn.__module__ == module.__name__:
                found.append(value)
    return found


def parameters_of(flow) -> dict:
    from prefect.utilities.callables import parameter_schema

    return parameter_schema(flow.fn).model_dump()["properties"]


def test_the_scan_finds_the_runbooks():
    names = {flow.name for flow in every_flow()}
    assert {"failover", "rebuild", "replicate", "backup", "reprotect"} <= names


@pytest.mark.parametrize("flow", every_flow(), ids=lambda flow: flow.name)
def test_every_parameter_has_a_description(flow):
    undescribed = [name for name, schema in parameters_of(flow).items() if not schema.get("description")]
    assert not undescribed, f"flow {flow.name}: add these to its docstring's Args section: {undescribed}"


def test_shared_meanings_have_one_name():
    """One name per meaning across flows (the CLI flag set is --dry-run, --approve, --yes)."""
    retired = {
        "plan_only": "dry_run",
        "plan": "dry_run",
        "approval_timeout_s": "approval_timeout_seconds",
        "approve_digest": "approved_plan_digest",
        "timeout_s": "…_seconds",
    }
    offenders = [(flow.name, name, retired[name]) for flow in every_flow() for name in parameters_of(flow) if name in retired]
    assert not offenders, f"rename (flow, parameter, use instead): {offenders}"
    gated = [flow for flow in every_flow() if "approved_plan_digest" in parameters_of(flow)]
    assert {flow.name for flow in gated} >= {"failover", "facility-failover", "rebuild"}
    for flow in gated:
        assert {"yes", "dry_run", "approval_timeout_seconds"} <= set(parameters_of(flow)), flow.name


def test_the_approval_form_explains_its_fields():
    from flows.approval import PlanApproval

    fields = PlanApproval.model_fields
    assert set(fields) == {"decision", "plan_digest", "operator"}
    assert all(field.description and field.is_required() for field in fields.values())
