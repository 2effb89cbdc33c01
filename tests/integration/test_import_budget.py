"""What importing a handler builds: the cold start's own share, pinned without timing anything.

Building a pydantic model's validator is most of what importing closedloop costs (~0.5-1 ms a
model on Lambda). closedloop's models build on first use (`closedloop.model.Model`), so importing a
handler builds only the configuration it validates at cold start, and imports only its own route's
event models. A model built at import again, or another route's events imported, fails here —
whatever the machine's speed. (docs/architecture.md, "Cold start".)
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from support.lambda_copy import RUNTIME_PYTHON
from support.stack import stack_env

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = sorted(p.parent.name for p in (ROOT / "functions").glob("*/app.py"))

# Validated at cold start on purpose: a bad configuration fails the init, not the first event.
SETTINGS = "closedloop.settings.Settings"
BUILT_AT_IMPORT = {
    # each line's gate (and its ApprovalPolicy) is built with the line's settings on its first event
    "approval_gate": {SETTINGS},
    "deploy_model": {SETTINGS},
    "drift_monitor": {SETTINGS},
    "promote_model": {SETTINGS},
    "record_deployment": {SETTINGS},
    "start_data_prep": {SETTINGS},
    "start_retraining": {SETTINGS},
    "start_training": {SETTINGS},
}
# The event models each handler imports: its own route's, and the SQS envelope only behind a queue.
EVENT_MODULES = {
    "approval_gate": {"base", "pipeline"},
    "deploy_model": {"base", "registry", "sqs"},
    "drift_monitor": {"base", "scheduler"},
    "promote_model": {"base", "stage"},
    "record_deployment": {"base", "endpoint", "stage"},  # and the stage change it announces
    "start_data_prep": {"base", "s3", "sqs"},
    "start_retraining": {"base", "cloudwatch"},
    "start_training": {"base", "jobs"},
}

# Libraries no handler needs at cold start (Powertools' batch package loads every data class and
# asyncio; closedloop.events.sqs builds the partial batch response itself).
HEAVY = ("aws_lambda_powertools.utilities.batch", "aws_lambda_powertools.utilities.data_classes")

CENSUS = (
    f"HEAVY = {HEAVY!r}\n"
    + """
import importlib, json, sys
from pydantic import BaseModel, TypeAdapter
importlib.import_module("app")
built, modules = [], sorted(name for name in sys.modules if name.startswith("closedloop."))
for name in modules:
    for attr, value in vars(sys.modules[name]).items():
        if isinstance(value, type) and issubclass(value, BaseModel) and value.__module__ == name:
            if value.__pydantic_complete__:
                built.append(f"{name}.{attr}")
        elif isinstance(value, TypeAdapter) and value.pydantic_complete:
            built.append(f"{name}.{attr}")
heavy = sorted(name for name in sys.modules if name.startswith(HEAVY))
print(json.dumps({"built": built, "modules": modules, "heavy": heavy}))
"""
)


def import_census(function: str) -> dict[str, list[str]]:
    """Import `function`'s handler as the runtime's bootstrap does; what it built and imported of closedloop."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "AWS_", "POWERTOOLS_"))},
        **stack_env(),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "functions" / function), str(ROOT / "layers" / "shared")]),
        "PYTHONDONTWRITEBYTECODE": "1",
        "LAMBDA_TASK_ROOT": str(ROOT / "functions" / function),
        "AWS_LAMBDA_FUNCTION_NAME": function,
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
    }
    result = subprocess.run(
        [str(RUNTIME_PYTHON), "-c", CENSUS], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    census: dict[str, list[str]] = json.loads(result.stdout.strip().splitlines()[-1])
    return census


@pytest.mark.parametrize("function", FUNCTIONS)
def test_importing_a_handler_builds_only_the_configuration_it_validates(function: str) -> None:
    # Given the runtime's python3.13, the template's environment and the function with the shared package
    # When the handler module is imported
    census = import_census(function)
    # Then the only validators built are the cold start's configuration: every other model builds on first use
    assert set(census["built"]) == BUILT_AT_IMPORT[function]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_a_handler_imports_only_its_own_routes_event_models(function: str) -> None:
    # Given a handler
    # When it is imported
    census = import_census(function)
    # Then of closedloop's event models it imported its route's (and the SQS envelope only behind a queue)
    events = {name.split(".")[2] for name in census["modules"] if name.startswith("closedloop.events.")}
    assert events == EVENT_MODULES[function]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_a_handler_loads_no_library_package_it_does_not_need(function: str) -> None:
    # Given a handler
    # When it is imported
    census = import_census(function)
    # Then none of the packages known to be heavy and unneeded came with it
    assert census["heavy"] == []
