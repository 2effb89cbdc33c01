"""Importing a handler builds no client, opens no connection and draws no random value.

What a handler does at import is what Lambda SnapStart would snapshot and restore into many
execution environments: a client, a connection or a random value made there would be shared by
all of them. It is also what every cold start pays before the first event.
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

# Every way to a client, a connection or randomness is recorded from before the handler's import on.
RECORD_SIDE_EFFECTS = """
import importlib, json, os, random, socket, sys, uuid
import botocore.session
made = []

def recording(what, original):
    def record(*args, **kwargs):
        made.append(f"{what} in {sys._getframe(1).f_globals.get('__name__')}")
        return original(*args, **kwargs)
    return record

create_client = botocore.session.Session.create_client
def record_client(self, service_name, *args, **kwargs):
    made.append(f"client:{service_name}")
    return create_client(self, service_name, *args, **kwargs)
botocore.session.Session.create_client = record_client
socket.socket.connect = recording("socket.connect", socket.socket.connect)
socket.create_connection = recording("socket.create_connection", socket.create_connection)
os.urandom = recording("os.urandom", os.urandom)
for name in ("random", "randint", "randrange", "choice", "choices", "getrandbits", "randbytes", "uniform",
             "shuffle", "sample", "seed"):
    setattr(random, name, recording(f"random.{name}", getattr(random, name)))
for name in ("uuid1", "uuid4"):
    setattr(uuid, name, recording(f"uuid.{name}", getattr(uuid, name)))
importlib.import_module("app")
print(json.dumps(made))
"""


@pytest.mark.parametrize("function", FUNCTIONS)
def test_importing_a_handler_makes_no_client_connection_or_random_state(function: str) -> None:
    # Given the runtime's python3.13, the template's environment and the function with the shared package
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
    env.pop("POWERTOOLS_TRACE_DISABLED")  # the tracer as the template runs it (Tracing: Active)
    # When the handler module is imported as the runtime's bootstrap does
    result = subprocess.run(
        [str(RUNTIME_PYTHON), "-c", RECORD_SIDE_EFFECTS],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Then it imported, and built no client, connected nowhere and drew no random value
    assert result.returncode == 0, result.stderr[-3000:]
    made = json.loads(result.stdout.strip().splitlines()[-1])
    # (the standard library's multiprocessing draws its process authkey when first imported; it keys
    # only multiprocessing's own connections, which no handler opens)
    assert [m for m in made if m != "os.urandom in multiprocessing.process"] == []


def test_with_tracing_on_nothing_is_patched_and_no_tracing_library_is_imported() -> None:
    # Given Lambda's environment with tracing on (Tracing: Active in the template)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "AWS_", "POWERTOOLS_"))},
        "PYTHONPATH": str(ROOT / "layers" / "shared"),
        "LAMBDA_TASK_ROOT": str(ROOT / "functions" / "start_training"),
        "AWS_LAMBDA_FUNCTION_NAME": "start_training",
        "POWERTOOLS_METRICS_NAMESPACE": "closedloop",
    }
    script = (
        "import json, sys\nimport botocore.client\nbefore = botocore.client.BaseClient._make_api_call\n"
        "import closedloop.observability, closedloop.aws\n"
        "print(json.dumps({'patched': botocore.client.BaseClient._make_api_call is not before,\n"
        "  'libraries': sorted(m for m in sys.modules if m.split('.')[0] in {'aws_xray_sdk', 'wrapt', 'asyncio'})}))"
    )
    # When the observability singletons and the client module are imported
    result = subprocess.run(
        [str(RUNTIME_PYTHON), "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    # Then botocore is not patched (calls are traced through its events) and no X-Ray SDK, wrapt or asyncio loads
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"patched": False, "libraries": []}
