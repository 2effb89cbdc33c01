"""Load a function's `app.py` as a fresh module (every function's module is named `app`)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from closedloop import aws
from closedloop.settings import load_settings

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"


def load_handler(name: str) -> ModuleType:
    """Import `functions/<name>/app.py` anew: module-level settings and clients are rebuilt."""
    load_settings.cache_clear()
    aws.reset_clients()
    module_name = f"closedloop_function_{name}"
    spec = importlib.util.spec_from_file_location(module_name, FUNCTIONS / name / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


class FakeLambdaContext:
    """The attributes Powertools reads from a Lambda context."""

    function_name = "closedloop-test"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:closedloop-test"
    aws_request_id = "00000000-0000-0000-0000-000000000000"

    def __init__(self, remaining_ms: int = 120_000) -> None:
        self._remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining_ms


def invoke(handler: ModuleType, event: dict[str, Any], remaining_ms: int = 120_000) -> dict[str, Any]:
    """Call a loaded function's `lambda_handler` with `event`, as Lambda would."""
    result: dict[str, Any] = handler.lambda_handler(event, FakeLambdaContext(remaining_ms=remaining_ms))
    return result
