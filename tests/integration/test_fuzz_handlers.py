"""Fuzzing the handlers on moto: a mutated real-format event is acted on correctly, or refused with the
documented error that sends it to its DLQ — never another exception, never a partial side effect.

Each example builds the event the route would really receive for a fresh subject (a new upload,
preparation run, execution, version or alarm state), mutates it (`support.mutations`: dropped
fields, wrong types, huge strings, unicode, numbers as strings, timestamps in the other format,
unknown fields), hands it to the function's `lambda_handler` and then checks the side effects
against what the handler said:
* EventBridge routes raise `InvalidEventError` (route 2 also `MissingEvidenceError`, for a run
  whose manifests are not where the event says) — and then nothing was started or changed;
* SQS routes never raise: a record is a batch item failure (route 1) or moved to the DLQ with the
  reason (route 4) — and then nothing was started or changed;
* what a handler reports it did, it did once: one job, one execution, one status change, one
  endpoint update, one published measurement.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from closedloop import aws, ledger_keys
from closedloop.errors import InvalidEventError, MissingEvidenceError
from closedloop_ops.moto_ext.monitoring import finish_pipeline_execution
from support.events import object_created, sqs_batch
from support.faults import counting
from support.handlers import FakeLambdaContext, load_handler
from support.mutations import mutated
from support.rollout import Rollout, provision_rollout
from support.stack import ACCOUNT, REGION, Stack
from support.training import create_pipeline, glue_event, pipeline_event, prepared_run, processing_event, start_glue_run
from support.worlds import (
    alarm_event,
    approval_status,
    drift_datapoints,
    drift_world,
    executed_version,
    ledger,
    pipeline_executions,
    processing_jobs,
    retraining_world,
    schedule_event,
)

EXAMPLES = 100
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one world per route; each example counts its own side effects
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
CONTEXT = FakeLambdaContext(remaining_ms=600_000)


@pytest.fixture(autouse=True)
def _fresh_metrics() -> Iterator[None]:
    from closedloop.observability import metrics

    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


def fuzz(route: str, build: Callable[[], Any], check: Callable[[Any], None]) -> int:
    """Run `check` on `EXAMPLES` mutations of what `build` makes fresh for each; returns the examples run."""
    examples = 0

    @FUZZ
    @given(st.data())
    def run(data: st.DataObject) -> None:
        nonlocal examples
        examples += 1
        # Hypothesis seeds the global `random` alike for every example, and moto draws identifiers
        # (pipeline execution ids…) from it: a seed of the example's own keeps them distinct
        random.seed(f"{route}/{examples}")
        event, _mutations = data.draw(mutated(build()), label="event")
        check(event)

    run()
    print(f"fuzz handlers, route {route}: {examples} examples")
    assert examples >= EXAMPLES
    return examples


def as_sqs_document(batch: dict[str, Any]) -> dict[str, Any]:
    """An SQS event whose record bodies are documents (so a mutation can reach inside the body)."""
    document = copy.deepcopy(batch)
    for record in document["Records"]:
        record["body"] = json.loads(record["body"])
    return document


def as_sqs_event(document: dict[str, Any], batch: dict[str, Any]) -> dict[str, Any]:
    """Back to what Lambda delivers: bodies as text; the record shape and message id are Lambda's own."""
    records = document.get("Records")
    record = records[0] if isinstance(records, list) and records and isinstance(records[0], dict) else {}
    body = record.get("body")
    original = batch["Records"][0]
    rebuilt = {
        **{k: v for k, v in record.items() if k in original},
        "messageId": original["messageId"],
        "body": json.dumps(body)
        if isinstance(body, dict | list)
        else body
        if isinstance(body, str)
        else json.dumps(body),
    }
    return {"Records": [rebuilt]}


# -- route 1 ---------------------------------------------------------------------------------------------


def test_route_1_uploads(stack: Stack) -> None:
    handler = load_handler("start_data_prep")
    s3 = boto3.client("s3", region_name=REGION)
    uploads = count()
    batches: list[dict[str, Any]] = []
    taken = [True]  # a new upload once the last one was taken by a run

    def build() -> dict[str, Any]:
        if taken[0]:
            n = next(uploads)
            batches.append(
                sqs_batch([object_created(stack.data_bucket, f"raw/loans/fuzz/{n}.csv", version_id=f"v-{n}")])
            )
        return as_sqs_document(batches[-1])

    def manifests() -> int:
        return int(s3.list_objects_v2(Bucket=stack.data_bucket, Prefix="manifests/")["KeyCount"])

    def check(document: dict[str, Any]) -> None:
        jobs, written = len(processing_jobs(stack)), manifests()
        response = handler.lambda_handler(as_sqs_event(document, batches[-1]), CONTEXT)  # never raises
        started = len(processing_jobs(stack)) - jobs
        if response["batchItemFailures"]:
            assert (started, manifests() - written) == (0, 0)  # refused: no job, no manifest
        else:
            assert started in (0, 1) and manifests() - written == started  # skipped, or one run and its manifest
        taken[0] = started == 1

    fuzz("1 uploads", build, check)


# -- route 2 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["processing", "glue"])
def test_route_2_preparation_ends(stack: Stack, engine: str) -> None:
    create_pipeline()
    boto3.client("glue", region_name=REGION).create_job(
        Name="closedloop-prep",
        Role=stack.settings.processing_role_arn,
        Command={"Name": "pythonshell", "ScriptLocation": "s3://closedloop-test-artifacts/prepare.py"},
        ExecutionProperty={"MaxConcurrentRuns": 1000},
    )
    handler = load_handler("start_training")
    runs = count()
    events: list[dict[str, Any]] = []
    trained = [True]  # a new preparation run once the last one started training

    def build() -> dict[str, Any]:
        if trained[0]:
            run = prepared_run(stack, f"{next(runs):016x}")
            events.append(processing_event(run) if engine == "processing" else glue_event(start_glue_run(run)))
        return events[-1]

    def check(event: dict[str, Any]) -> None:
        before = len(pipeline_executions(stack))
        try:
            outcome = handler.lambda_handler(event, CONTEXT)
        except (InvalidEventError, MissingEvidenceError):
            assert len(pipeline_executions(stack)) == before
            trained[0] = False
            return
        started = len(pipeline_executions(stack)) - before
        assert started in (0, 1) and (started == 0 or outcome["result"] == "started")
        trained[0] = outcome["result"] == "started"

    fuzz(f"2 {engine} job end", build, check)


# -- route 3 ---------------------------------------------------------------------------------------------


def test_route_3_pipeline_ends(stack: Stack) -> None:
    create_pipeline()
    gate = load_handler("approval_gate")
    prepared = prepared_run(stack)
    subjects: list[tuple[dict[str, Any], str]] = []
    pending = [False]  # a new version once the last one was decided

    def build() -> dict[str, Any]:
        if not pending[0]:
            execution, arn = executed_version(stack, prepared=prepared)
            subjects.append((pipeline_event(execution), arn))
        return subjects[-1][0]

    def check(event: dict[str, Any]) -> None:
        arn = subjects[-1][1]
        try:
            outcome = gate.lambda_handler(event, CONTEXT)
        except InvalidEventError:
            assert approval_status(stack, arn) == "PendingManualApproval"
            pending[0] = True
            return
        decided = {"approved": "Approved", "rejected": "Rejected"}.get(outcome["result"])
        status = approval_status(stack, arn)
        assert status == (decided if outcome.get("model_package_arn") == arn and decided else "PendingManualApproval")
        pending[0] = status == "PendingManualApproval"

    fuzz("3 pipeline end", build, check)


# -- route 4 ---------------------------------------------------------------------------------------------


def test_route_4_approvals(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    world: Rollout = provision_rollout(stack, monkeypatch)
    world.deliver()  # loads the function
    sagemaker = world.deploy.approvals._rollouts["loans"]._hosting._sagemaker
    batches: list[dict[str, Any]] = []
    decided = [True]  # a new approved version once the last approval was decided

    def build() -> dict[str, Any]:
        if decided[0]:
            arn = world.register()
            world.set_status(arn, "Approved")
            batches.append(sqs_batch([world.event(arn)], queue_arn=world.queue_arn))
        return as_sqs_document(batches[-1])

    def dead_letters() -> int:
        attributes = world.sqs.get_queue_attributes(
            QueueUrl=world.dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])

    def check(document: dict[str, Any]) -> None:
        moved = dead_letters()
        with counting(sagemaker, "CreateEndpoint", "UpdateEndpoint") as changes:
            response = world.deploy.lambda_handler(as_sqs_event(document, batches[-1]), CONTEXT)  # never raises
        changed = sum(changes.calls.values())
        assert changed <= 1
        if response["batchItemFailures"] or dead_letters() > moved:
            assert changed == 0  # retried later, or dead-lettered with its reason: nothing deployed
        decided[0] = changed == 1

    fuzz("4 approvals", build, check)


# -- route 5 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "detail_type", ["SageMaker Endpoint State Change", "SageMaker Endpoint Deployment State Change"]
)
def test_route_5_endpoint_events(stack: Stack, monkeypatch: pytest.MonkeyPatch, detail_type: str) -> None:
    world: Rollout = provision_rollout(stack, monkeypatch)

    def deploy() -> None:
        arn = world.register()
        world.set_status(arn, "Approved")
        world.deliver(world.event(arn))

    deploy()
    world.outcome()

    def build() -> dict[str, Any]:
        if not world.state().get("pending_model_package_arn"):
            deploy()  # a deployment for the event to be about
        return world.endpoint_event(detail_type)

    def check(event: dict[str, Any]) -> None:
        state = world.state()
        try:
            world.outcome(event)
        except InvalidEventError:
            assert world.state() == state
            return

    fuzz(f"5 {detail_type}", build, check)


# -- route 6 ---------------------------------------------------------------------------------------------


def test_route_6_alarms(stack: Stack) -> None:
    retraining_world(stack)
    handler = load_handler("start_retraining")
    ddb = boto3.client("dynamodb", region_name=REGION)
    start = datetime.now(UTC)
    alarms = count()
    retrained = [False]

    def build() -> dict[str, Any]:
        if retrained[0]:  # the next example may start a retraining again: no cooldown, no lock, nothing running
            for pk, sk in (
                (f"STATE#{ledger_keys.cooldown('closedloop-loans')}", "STATE"),
                ("LOCK#retrain#closedloop-loans", "LOCK"),
            ):
                ddb.delete_item(TableName=stack.settings.ledger_table, Key={"pk": {"S": pk}, "sk": {"S": sk}})
            for execution in pipeline_executions(stack):
                if execution["PipelineExecutionStatus"] == "Executing":
                    finish_pipeline_execution(ACCOUNT, REGION, execution["PipelineExecutionArn"], "Succeeded")
        return alarm_event(at=start + timedelta(seconds=next(alarms)))

    def check(event: dict[str, Any]) -> None:
        before = len(pipeline_executions(stack))
        try:
            outcome = handler.lambda_handler(event, CONTEXT)
        except InvalidEventError:
            assert len(pipeline_executions(stack)) == before
            assert ledger(stack).get_lock("retrain#closedloop-loans") is None
            retrained[0] = False
            return
        started = len(pipeline_executions(stack)) - before
        assert started == (1 if outcome["result"] == "started" and not outcome["found_existing"] else 0)
        retrained[0] = started == 1

    fuzz("6 alarms", build, check)


# -- route 7 ---------------------------------------------------------------------------------------------


def test_route_7_schedules(stack: Stack) -> None:
    drift_world(stack)
    handler = load_handler("drift_monitor")
    runs = count()

    def build() -> dict[str, Any]:
        return schedule_event(f"fuzz-{next(runs):04d}")

    def check(event: dict[str, Any]) -> None:
        published = drift_datapoints(stack)
        with counting(aws.cloudwatch(), "PutMetricData") as puts:
            try:
                result = handler.lambda_handler(event, CONTEXT)
            except InvalidEventError:
                assert puts.calls["PutMetricData"] == 0
                return
        assert drift_datapoints(stack) - published == (1 if result["result"] == "published" else 0)

    fuzz("7 schedules", build, check)
