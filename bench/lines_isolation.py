"""Ten model lines served by one stack at once, through the real handlers on moto.

Two phases, one figure (`lines_isolation` in bench/run.py):
* uploads: 1,000 `Object Created` events spread over the lines, delivered to `start_data_prep` as
  the route's SQS event source batches them (the template's default `BatchSize`, and no batch
  above Lambda's 6 MB invocation payload) → one preparation run per line, no more, no fewer;
* alarm storm: N ALARM state changes of each line's drift alarms, every line at once, each event
  delivered to `start_retraining` in its own thread → one pipeline execution per line.

The lines are declared for the benchmark only: `closedloop.line.load_line` is replaced, for the
length of the run, by one that answers the ten names with the loans line under each name (and
every other name as before). Both the line catalogue (`LineCatalog.spec`) and the dataset policy
(`closedloop.dataprep.policy.load_policy`, which looks `load_line` up on the module at call time)
read lines through that one attribute, so nothing is written into the package and no other
lookup is touched; `load_policy`'s cache is cleared on the way in and out.

    PYTHONPATH=layers/shared:src:tests .venv/bin/python bench/lines_isolation.py [--uploads 1000] [--alarms 20]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Lambda's synchronous invocation payload limit: the SQS poller stops a batch short of it.
PAYLOAD_LIMIT_BYTES = 6 * 1024 * 1024


def line_names(count: int) -> tuple[str, ...]:
    return tuple(f"line-{index:02d}" for index in range(1, count + 1))


@contextlib.contextmanager
def declared_lines(names: tuple[str, ...], shape: str = "loans") -> Iterator[None]:
    """Declare `names` as model lines shaped like the shipped `shape` line, for the block only."""
    from closedloop import line as line_module
    from closedloop.dataprep import policy as policy_module

    real = line_module.load_line
    template = real(shape)
    declared = {name: template.model_copy(update={"dataset": name}) for name in names}

    def load_line(name: str) -> Any:
        return declared[name] if name in declared else real(name)

    policy_module.load_policy.cache_clear()
    line_module.load_line = load_line  # type: ignore[assignment]
    try:
        yield
    finally:
        line_module.load_line = real
        policy_module.load_policy.cache_clear()


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """The functions' environment for the block; the process's own afterwards."""
    before = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(before)


@contextlib.contextmanager
def quiet_handlers() -> Iterator[None]:
    """The handlers' logs and metrics go nowhere: a thousand events' worth is not the bench's output."""
    from closedloop import observability
    from closedloop_ops.local.dispatcher import point_logger

    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), warnings.catch_warnings():
        # handlers in threads share one Metrics store: a flush can find it emptied by another's
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        previous = point_logger(observability, devnull)
        try:
            yield
        finally:
            point_logger(observability, previous)


def template_batch_size() -> int:
    """The default of the template's `BatchSize` parameter (the upload queue's event source)."""
    from closedloop_ops.local.template import read_yaml

    return int(read_yaml(ROOT / "template.yaml")["Parameters"]["BatchSize"]["Default"])


def sqs_batches(events: list[dict[str, Any]], batch_size: int) -> list[dict[str, Any]]:
    """The invocations the SQS event source makes of these queued events, in order."""
    from support.events import sqs_batch

    bodies: list[dict[str, Any] | str] = [*events]
    records = sqs_batch(bodies)["Records"]
    batches: list[list[dict[str, Any]]] = [[]]
    size = 0
    for record in records:
        record_bytes = len(json.dumps(record))
        if batches[-1] and (len(batches[-1]) >= batch_size or size + record_bytes > PAYLOAD_LIMIT_BYTES):
            batches.append([])
            size = 0
        batches[-1].append(record)
        size += record_bytes
    return [{"Records": batch} for batch in batches if batch]


def alarm_event(name: str, at: datetime) -> dict[str, Any]:
    """OK → ALARM of `name` at `at`, as EventBridge delivers it (shaped like events/alarm_state_change.json)."""
    from support.events import load_event
    from support.stack import ACCOUNT, REGION

    event = load_event("alarm_state_change")
    event["id"] = str(uuid.uuid4())
    event["account"], event["region"] = ACCOUNT, REGION
    event["resources"] = [f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{name}"]
    event["time"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    event["detail"]["alarmName"] = name
    event["detail"]["state"]["timestamp"] = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}+0000"
    return event


def measure(lines: int = 10, uploads: int = 1000, alarms_per_line: int = 20) -> dict[str, Any]:
    """Both phases on one moto stack; the figure's counts per line and wall times."""
    from moto import mock_aws

    from closedloop import aws
    from closedloop.settings import load_settings
    from closedloop_ops import moto_ext
    from support.stack import provision, stack_env

    names = line_names(lines)
    env = {**stack_env(), "MODEL_LINES": ",".join(names)}
    moto_ext.install()
    with environment(env), declared_lines(names), mock_aws(), quiet_handlers():
        aws.reset_clients()
        load_settings.cache_clear()
        stack = provision(env)
        prep = _uploads(stack, names, uploads)
        storm = _alarm_storm(stack, names, alarms_per_line)
        load_settings.cache_clear()
        aws.reset_clients()
    ok = (
        prep["runs"] == lines
        and all(prep["per_line"].get(name) == 1 for name in names)
        and not prep["batch_item_failures"]
        and all(storm["per_line"].get(name) == 1 for name in names)
        and not storm["handler_errors"]
    )
    return {
        "lines": lines,
        "uploads": uploads,
        "prep_runs": prep["runs"],
        "prep_runs_per_line": prep["per_line"],
        "alarm_events": storm["events"],
        "executions_per_line": storm["per_line"],
        "ok": ok,
        "wall_s": round(prep["seconds"] + storm["seconds"], 2),
        "detail": {
            "prep_wall_s": round(prep["seconds"], 2),
            "storm_wall_s": round(storm["seconds"], 2),
            "batch_size": prep["batch_size"],
            "batches": prep["batches"],
            "batch_item_failures": prep["batch_item_failures"],
            "alarms_per_line": alarms_per_line,
            "handler_errors": storm["handler_errors"],
            "started_per_line": storm["started_per_line"],
            "suppressed_because": storm["suppressed_because"],
        },
    }


def _uploads(stack: Any, names: tuple[str, ...], uploads: int) -> dict[str, Any]:
    import boto3

    from closedloop import lineage
    from support.events import object_created
    from support.handlers import FakeLambdaContext, load_handler

    handler = load_handler("start_data_prep")
    events = [
        object_created(stack.data_bucket, f"raw/{names[i % len(names)]}/bench/f-{i:05d}.csv", version_id=f"v{i}")
        for i in range(uploads)
    ]
    batch_size = template_batch_size()
    batches = sqs_batches(events, batch_size)
    failures = 0
    started = time.perf_counter()
    for batch in batches:
        failures += len(handler.lambda_handler(batch, FakeLambdaContext())["batchItemFailures"])
    seconds = time.perf_counter() - started
    sagemaker = boto3.client("sagemaker")
    per_line: Counter[str] = Counter()
    for page in sagemaker.get_paginator("list_processing_jobs").paginate():
        for job in page["ProcessingJobSummaries"]:
            arn = sagemaker.describe_processing_job(ProcessingJobName=job["ProcessingJobName"])["ProcessingJobArn"]
            tags = {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=arn)["Tags"]}
            per_line[tags.get(lineage.DATASET, "(untagged)")] += 1
    return {
        "runs": sum(per_line.values()),
        "per_line": {name: per_line.get(name, 0) for name in sorted({*names, *per_line})},
        "seconds": seconds,
        "batch_size": batch_size,
        "batches": len(batches),
        "batch_item_failures": failures,
    }


def _alarm_storm(stack: Any, names: tuple[str, ...], alarms_per_line: int) -> dict[str, Any]:
    import boto3

    from closedloop import ledger_keys, lineage
    from closedloop.ledger import Ledger
    from closedloop.line import LineResources
    from support.handlers import FakeLambdaContext, load_handler
    from support.stack import ACCOUNT

    settings = stack.settings
    sagemaker = boto3.client("sagemaker")
    sagemaker.create_pipeline(
        PipelineName=settings.pipeline_name,
        PipelineDefinition=json.dumps({"Version": "2020-12-01", "Parameters": [], "Steps": []}),
        RoleArn=f"arn:aws:iam::{ACCOUNT}:role/closedloop-pipeline",
    )
    ledger = Ledger(settings.ledger_table, boto3.client("dynamodb"))
    cloudwatch = boto3.client("cloudwatch")
    owned = {name: LineResources.of(settings.resource_prefix, settings.raw_prefix, name) for name in names}
    for name, resources in owned.items():
        # what route 2 records when a line's preparation succeeds
        prepared = f"s3://{settings.data_bucket}/{settings.prepared_prefix}{name}/run-1/"
        ledger.put_state(
            ledger_keys.latest_prepared(resources.model_package_group),
            {
                "prepared_manifest_uri": prepared + "manifest.json",
                "data_uri": prepared + "data.csv",
                "prep_run_id": "run-1",
                "dataset": name,
                "code_version": "sha256:0",
            },
        )
        for alarm in resources.drift_alarms:  # tagged with the line's group, as the template tags them
            cloudwatch.put_metric_alarm(
                AlarmName=alarm,
                Namespace=settings.drift_metrics_namespace,
                MetricName="MaxFeaturePSI",
                Dimensions=[{"Name": "Endpoint", "Value": resources.endpoint_name}],
                Statistic="Maximum",
                Period=3600,
                EvaluationPeriods=1,
                Threshold=0.2,
                ComparisonOperator="GreaterThanThreshold",
                TreatMissingData="notBreaching",
                Tags=[{"Key": "closedloop:model-group", "Value": resources.model_package_group}],
            )
    handler = load_handler("start_retraining")
    now = datetime.now(UTC)
    events = [
        (name, alarm_event(alarms[i % len(alarms)], at=now + timedelta(milliseconds=i)))
        for name, alarms in ((n, owned[n].drift_alarms) for n in names)
        for i in range(alarms_per_line)
    ]
    barrier = threading.Barrier(len(events))
    outcomes: list[tuple[str, dict[str, Any]]] = []
    errors: list[str] = []

    def deliver(name: str, event: dict[str, Any]) -> None:
        barrier.wait()
        try:
            outcomes.append((name, handler.lambda_handler(event, FakeLambdaContext())))
        except Exception as exc:  # counted and named by type: the figure fails on any
            errors.append(type(exc).__name__)

    threads = [threading.Thread(target=deliver, args=pair) for pair in events]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    group_line = {resources.model_package_group: name for name, resources in owned.items()}
    per_line: Counter[str] = Counter()
    pages = sagemaker.get_paginator("list_pipeline_executions").paginate(PipelineName=settings.pipeline_name)
    for page in pages:
        for execution in page["PipelineExecutionSummaries"]:
            parameters = sagemaker.list_pipeline_parameters_for_execution(
                PipelineExecutionArn=execution["PipelineExecutionArn"]
            )["PipelineParameters"]
            group = next((p["Value"] for p in parameters if p["Name"] == lineage.PARAM_MODEL_GROUP), "")
            per_line[group_line.get(group, "(other group)")] += 1
    suppressed: dict[str, Counter[str]] = {name: Counter() for name in names}
    for name, outcome in outcomes:
        if outcome["result"] == "suppressed":
            suppressed[name][str(outcome["suppressed_because"])] += 1
    return {
        "events": len(events),
        "per_line": {name: per_line.get(name, 0) for name in sorted({*names, *per_line})},
        "started_per_line": {
            name: sum(1 for line, o in outcomes if line == name and o["result"] == "started") for name in names
        },
        "suppressed_because": {name: dict(counts) for name, counts in suppressed.items()},
        "handler_errors": dict(Counter(errors)),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10)
    parser.add_argument("--uploads", type=int, default=1000)
    parser.add_argument("--alarms", type=int, default=20, help="ALARM state changes per line")
    args = parser.parse_args()
    print(json.dumps(measure(args.lines, args.uploads, args.alarms), indent=2))


if __name__ == "__main__":
    main()
