"""Cold starts as Lambda runs them: the built artifact, read-only, with the bytecode it ships.

`sam build` output is laid out as Lambda mounts it (layer → opt/python, function → task/<name>),
read-only, and run by the runtime's Python (.venv-runtime: python3.13 with the runtime's boto3 and
its bytecode) with `PYTHONDONTWRITEBYTECODE=1`, so nothing the import compiles is kept for the next
process. (No `PYTHONPYCACHEPREFIX`: with one set, Python looks for bytecode only under that prefix
and would ignore what the artifact ships.) Each measured process takes turns with its reference
process, so a slow spell of the shared machine lands on both:

* cold init — `importlib.import_module("app")` as the runtime's bootstrap does, against a process
  that only imports boto3;
* first invocation — the same, then one `lambda_handler` call on a realistic event of the route
  against a moto server on 127.0.0.1 holding what the route needs (built anew before each run, in
  this process, so every run does the same work), against a process that imports boto3, builds a
  SageMaker client and makes one call to the same server.

Times are wall times of whole processes (interpreter start to exit), as Lambda's Init Duration
counts the runtime's start too.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = sorted(p.parent.name for p in (ROOT / "functions").glob("*/app.py"))

COLD_INIT = """
import importlib, time
start = time.perf_counter()
importlib.import_module("app")
print("BENCH", round((time.perf_counter() - start) * 1000, 2))
"""

FIRST_INVOCATION = """
import importlib, json, sys, time
event = json.loads(sys.stdin.read())
start = time.perf_counter()
app = importlib.import_module("app")
imported = time.perf_counter()

class Context:
    function_name = "closedloop-bench"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:closedloop-bench"
    aws_request_id = "6f1c8b9e-3c1e-4c5e-9d38-2b1f0b7d9a11"
    def get_remaining_time_in_millis(self):
        return 120_000

result = app.lambda_handler(event, Context())
done = time.perf_counter()
outcome = result.get("result") or ("failures=%d" % len(result.get("batchItemFailures", [])))
print("BENCH", json.dumps({"import_ms": round((imported - start) * 1000, 2),
                           "call_ms": round((done - imported) * 1000, 2), "outcome": outcome}))
"""

BARE_BOTO3 = 'import boto3\nprint("BENCH", 0)'
BARE_BOTO3_ONE_CLIENT = 'import boto3\nboto3.client(\'sagemaker\').list_model_package_groups()\nprint("BENCH", "ok")'


def median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def lambda_environment(task: Path, opt: Path, extra: dict[str, str]) -> dict[str, str]:
    """What the Lambda python3.13 runtime sets, the template's function environment, nothing of this shell's."""
    from support.stack import stack_env

    keep = ("PATH", "HOME", "LANG", "TZ")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(stack_env())
    env.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_SESSION_TOKEN": "bench",
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
            "AWS_LAMBDA_FUNCTION_NAME": "closedloop-bench",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
            "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
            "LAMBDA_TASK_ROOT": str(task),
            "LAMBDA_RUNTIME_DIR": str(opt.parent),
            # sampled, as a cold start's first request mostly is (X-Ray's reservoir: the first each
            # second): the subsegments go to a daemon address on loopback where nothing listens
            "_X_AMZN_TRACE_ID": "Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=1",
            "PYTHONPATH": os.pathsep.join([str(task), str(opt / "python")]),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    # Tracing: Active in the template: the tracer is on, as on AWS.
    env.pop("POWERTOOLS_TRACE_DISABLED", None)
    env.update(extra)
    return env


def _run(
    python: str, script: str, env: dict[str, str], stdin: str = "", args: tuple[str, ...] = ()
) -> tuple[float, str]:
    """(wall ms of the whole process, what it printed after BENCH)."""
    started = time.perf_counter()
    result = subprocess.run(
        [python, *args, "-c", script], env=env, input=stdin, capture_output=True, text=True, check=False
    )
    wall = (time.perf_counter() - started) * 1000
    if result.returncode != 0:
        start = max(result.stderr.rfind("Traceback"), 0)  # the error, not the log lines after it
        raise RuntimeError(f"benchmark process failed: {result.stderr[start : start + 3000]}")
    marker = [line for line in result.stdout.splitlines() if line.startswith("BENCH ")]
    return wall, (marker[-1][6:] if marker else "") + ("\n" + result.stderr if "-X" in args else "")


def own_import_ms(python: str, env: dict[str, str]) -> float:
    """Self time of closedloop's modules (and the handler's) in `-X importtime`, in ms."""
    _, out = _run(python, COLD_INIT, env, args=("-X", "importtime"))
    total = 0
    for match in re.finditer(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", out):
        if match.group(2).split(".")[0] in {"closedloop", "app"}:
            total += int(match.group(1))
    return round(total / 1000, 1)


# -- the local AWS, and each route's world in it ---------------------------------------------------


@contextmanager
def local_aws() -> Iterator[str]:
    """A moto server on loopback (with closedloop's extensions); this process's clients point at it."""
    from moto.server import ThreadedMotoServer

    from closedloop_ops import moto_ext

    moto_ext.install()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    saved = dict(os.environ)
    from support.stack import stack_env

    os.environ.update(
        {**stack_env(), "AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    )
    os.environ.pop("AWS_SESSION_TOKEN", None)
    try:
        yield url
    finally:
        os.environ.clear()
        os.environ.update(saved)
        server.stop()


def _fresh_stack(url: str, extra_env: dict[str, str]) -> Any:
    """Empty the server and create the stack's stateful resources again."""
    import urllib.request

    from closedloop import aws
    from closedloop.settings import load_settings
    from support.stack import provision

    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST")).read()
    os.environ.update(extra_env)
    aws.reset_clients()
    load_settings.cache_clear()
    return provision(dict(os.environ))


def _data_arrival(url: str) -> tuple[dict[str, Any], dict[str, str]]:
    import boto3

    from support.events import object_created, sqs_batch

    stack = _fresh_stack(url, {})
    s3 = boto3.client("s3")
    events = []
    for index in range(3):
        key = f"raw/loans/2026-11-27/part-{index}.csv"
        version = s3.put_object(Bucket=stack.data_bucket, Key=key, Body=b"id,amount\n1,2\n")["VersionId"]
        events.append(object_created(stack.data_bucket, key, version_id=version))
    return sqs_batch(events), {}


def _prep_finished(url: str) -> tuple[dict[str, Any], dict[str, str]]:
    from support.training import create_pipeline, prepared_run, processing_event

    stack = _fresh_stack(url, {})
    create_pipeline()
    return processing_event(prepared_run(stack)), {}


def _pipeline_finished(url: str) -> tuple[dict[str, Any], dict[str, str]]:
    from support.training import create_pipeline, pipeline_event
    from support.worlds import executed_version

    stack = _fresh_stack(url, {})
    create_pipeline()
    execution, _ = executed_version(stack)
    return pipeline_event(execution), {}


ROLLOUT_ENV = {
    "APPROVAL_GATE_ROLE_ARN": "arn:aws:iam::123456789012:role/closedloop-test-ApprovalGateFunctionRole-1AB2C3D4",
    "ROLLBACK_ALARM_NAMES": "closedloop-loans-endpoint-5xx,closedloop-loans-endpoint-latency",
}


def _rollout(url: str) -> Any:
    import pytest

    from support.rollout import provision_rollout

    stack = _fresh_stack(url, ROLLOUT_ENV)
    with pytest.MonkeyPatch.context() as patch:
        return provision_rollout(stack, patch)


def _model_approved(url: str) -> tuple[dict[str, Any], dict[str, str]]:
    from support.events import sqs_batch

    world = _rollout(url)
    return sqs_batch([world.event(world.approved())], queue_arn=world.queue_arn), ROLLOUT_ENV


def _endpoint_changed(url: str) -> tuple[dict[str, Any], dict[str, str]]:
    world = _rollout(url)
    world.deliver(world.event(world.approved()))  # the deployment the endpoint event reports on, started in-process
    return world.endpoint_event(), ROLLOUT_ENV


def _alarm(url: str) -> tuple[dict[str, Any], dict[str, str]]:
    from support.worlds import alarm_event, retraining_world

    retraining_world(_fresh_stack(url, {}))
    return alarm_event(at=datetime.now(UTC)), {}


def _drift_run(url: str) -> tuple[dict[str, Any], dict[str, str]]:
    from support.worlds import drift_world, schedule_event

    drift_world(_fresh_stack(url, {}))
    return schedule_event(), {}


STAGE_ENV = {"STAGE_ACCOUNT_IDS": "222222222222"}


def _stage_change(url: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The build stack's route 8: staging reports a version live there (recorded in the ledger)."""
    import json
    import uuid

    _fresh_stack(url, STAGE_ENV)
    event = json.loads((ROOT / "events" / "stage_change_live.json").read_text())
    source = "arn:aws:sagemaker:eu-west-1:123456789012:model-package/closedloop-loans/3"
    event.update(id=str(uuid.uuid4()), account="222222222222", region="eu-west-1", time=datetime.now(UTC).isoformat())
    event["detail"].update(
        stage="staging",
        source_model_package_arn=source,
        model_package_arn=source.replace("123456789012", "222222222222"),
    )
    return event, STAGE_ENV


# Each route's world and event: what its first call does on AWS (outcome in the figure's detail).
WORLDS: dict[str, Callable[[str], tuple[dict[str, Any], dict[str, str]]]] = {
    "start_data_prep": _data_arrival,
    "start_training": _prep_finished,
    "approval_gate": _pipeline_finished,
    "deploy_model": _model_approved,
    "record_deployment": _endpoint_changed,
    "start_retraining": _alarm,
    "drift_monitor": _drift_run,
    "promote_model": _stage_change,
}


# -- the figures ------------------------------------------------------------------------------------


def lay_out_build(python: str, strip_bytecode: bool = False) -> Path:
    """`sam build` (make build), laid out read-only in a fresh directory."""
    from support.lambda_copy import lay_out

    subprocess.run(["make", "-s", "build"], cwd=ROOT, check=True, capture_output=True)
    dest = Path(tempfile.mkdtemp(prefix="closedloop-lambda-"))
    lay_out(ROOT / ".aws-sam" / "build", dest, FUNCTIONS)
    if strip_bytecode:  # what the artifact was before it shipped bytecode (same sources)
        for cache in list(dest.rglob("__pycache__")):
            cache.parent.chmod(0o755)
            shutil.rmtree(cache)
    return dest


def measure(python: str, repeats: int, strip_bytecode: bool = False) -> dict[str, dict[str, Any]]:
    """Per handler: cold init and first invocation with their reference processes, medians of `repeats`."""
    layout = lay_out_build(python, strip_bytecode)
    results: dict[str, dict[str, Any]] = {}
    try:
        with local_aws() as url:
            for function in FUNCTIONS:
                task, opt = layout / "task" / function, layout / "opt"
                env = lambda_environment(task, opt, {"AWS_ENDPOINT_URL": url, "POWERTOOLS_SERVICE_NAME": function})
                cold, bare, imports = [], [], []
                for _ in range(repeats):
                    bare.append(_run(python, BARE_BOTO3, env)[0])
                    wall, out = _run(python, COLD_INIT, env)
                    cold.append(wall)
                    imports.append(float(out))
                first, first_ref, calls, outcomes = [], [], [], set()
                for _ in range(repeats):
                    with contextlib.redirect_stdout(io.StringIO()):  # handlers run in-process log to stdout
                        event, extra = WORLDS[function](url)
                    first_ref.append(_run(python, BARE_BOTO3_ONE_CLIENT, env)[0])
                    wall, out = _run(python, FIRST_INVOCATION, {**env, **extra}, stdin=json.dumps(event))
                    report = json.loads(out)
                    first.append(wall)
                    calls.append(report["call_ms"])
                    outcomes.add(report["outcome"])
                own = [own_import_ms(python, env) for _ in range(max(1, repeats // 3))]
                results[function] = {
                    "cold_init_ms": median(cold),
                    "bare_boto3_ms": median(bare),
                    "cold_init_ratio": round(median(cold) / median(bare), 2),
                    "import_ms": median(imports),
                    "closedloop_own_import_ms": median(own),
                    "first_invocation_ms": median(first),
                    "bare_boto3_one_client_ms": median(first_ref),
                    "first_invocation_ratio": round(median(first) / median(first_ref), 2),
                    "first_call_ms": median(calls),
                    "first_call_outcome": ",".join(sorted(outcomes)),
                    "repeats": repeats,
                }
    finally:
        for path in [layout, *layout.rglob("*")]:
            path.chmod(0o755)
        shutil.rmtree(layout, ignore_errors=True)
    return results


if __name__ == "__main__":  # python bench/lambda_cold.py PYTHON [REPEATS] [--strip-bytecode]
    figures = measure(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5, "--strip-bytecode" in sys.argv)
    print(json.dumps(figures, indent=2))
