"""Concurrent duplicates: the same event handled by two invocations at once — one acts, the other waits
or is retried; there is never a second side effect.

Each delivery runs the route's domain entry point in its own thread (Lambda runs concurrent
invocations in separate environments, so the handlers' process-wide Powertools singletons are left
out). The side-effect call is held for 50 ms, so the second delivery reaches the idempotency
record, the lock or the endpoint while the first is still inside it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from closedloop import aws
from closedloop.errors import ClosedloopError, EndpointBusyError
from closedloop.events.cloudwatch import parse_alarm_event
from closedloop.events.endpoint import ENDPOINT_EVENT
from closedloop.events.jobs import parse_prep_job_event
from closedloop.events.pipeline import parse_pipeline_execution_event
from closedloop.events.scheduler import parse_drift_run
from support.events import object_created, sqs_batch
from support.faults import counting, race, slowed
from support.handlers import FakeLambdaContext, load_handler
from support.rollout import Rollout, provision_rollout
from support.stack import Stack
from support.training import (
    create_pipeline,
    glue_event,
    pipeline_event,
    prepared_run,
    processing_event,
    start_glue_run,
)
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

CONTEXT = FakeLambdaContext()


@pytest.fixture(autouse=True)
def _fresh_metrics() -> Iterator[None]:
    """Domain calls made without a handler leave metrics behind; they must not leak into another test."""
    from closedloop.observability import metrics

    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


def in_progress(result: Any) -> bool:
    """The retryable answer of a delivery that met the other one inside the idempotency guard."""
    return isinstance(result, ClosedloopError) and result.retryable


def retried(results: list[Any], deliver: Callable[[], Any]) -> list[Any]:
    """Deliver again every delivery that ended in a retryable error (Lambda's or SQS's retry)."""
    return [deliver() if in_progress(result) else result for result in results]


def test_data_arrival_the_same_batch_twice_at_once_starts_one_job(stack: Stack) -> None:
    handler = load_handler("start_data_prep")
    batch = sqs_batch([object_created(stack.data_bucket, "raw/loans/race/a.csv", version_id="v-1")])
    # When two invocations take the same records at once
    with slowed(aws.sagemaker(), "CreateProcessingJob"):
        first, second = race(*[lambda: handler.arrivals.handle(batch, CONTEXT)] * 2)
    # Then one started the job; the other reported its records for a retry (or found the run done)
    failures = [len(r["batchItemFailures"]) for r in (first, second)]
    assert sorted(failures) in ([0, 0], [0, 1])
    assert len(processing_jobs(stack)) == 1
    # And the retried records start nothing
    assert handler.arrivals.handle(batch, CONTEXT)["batchItemFailures"] == []
    assert len(processing_jobs(stack)) == 1


def test_data_prepared_the_processing_and_glue_ends_of_one_run_at_once_start_one_execution(stack: Stack) -> None:
    create_pipeline()
    handler = load_handler("start_training")
    handler.starter.register_lambda_context(CONTEXT)
    run = prepared_run(stack)
    events = [processing_event(run), processing_event(run, event_id="copy"), glue_event(start_glue_run(run))]

    def deliver(event: dict[str, Any]) -> Callable[[], Any]:
        return lambda: handler.starter.handle(parse_prep_job_event(event))

    with slowed(aws.sagemaker(), "StartPipelineExecution"):
        results = race(*[deliver(e) for e in events])
    assert any(in_progress(r) for r in results)
    settled = [deliver(e)() if in_progress(r) else r for e, r in zip(events, results, strict=True)]
    assert len(pipeline_executions(stack)) == 1
    assert {r.execution_arn for r in settled} == {pipeline_executions(stack)[0]["PipelineExecutionArn"]}


def test_pipeline_finished_the_same_status_twice_at_once_decides_once(stack: Stack) -> None:
    create_pipeline()
    gate = load_handler("approval_gate")
    gate.gate.register_lambda_context(CONTEXT)
    execution, arn = executed_version(stack)
    event = parse_pipeline_execution_event(pipeline_event(execution))
    with slowed(aws.sagemaker(), "UpdateModelPackage"), counting(aws.sagemaker(), "UpdateModelPackage") as calls:
        results = race(*[lambda: gate.gate.handle(event)] * 2)
        assert any(in_progress(r) for r in results)
        settled = retried(results, lambda: gate.gate.handle(event))
    assert [r.result for r in settled] == ["approved", "approved"]
    assert calls.calls["UpdateModelPackage"] == 1
    assert approval_status(stack, arn) == "Approved"
    assert [d.result for d in ledger(stack).decisions_for(arn)] == ["approved"]


def test_model_approval_the_same_approval_twice_at_once_updates_the_endpoint_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    world: Rollout = provision_rollout(stack, monkeypatch)
    world.live()
    v2 = world.approved()
    event = world.event(v2)
    approvals = world.deploy.approvals
    sagemaker = approvals._rollouts["loans"]._hosting._sagemaker

    def deliver() -> Any:
        return approvals.handle(sqs_batch([event], queue_arn=world.queue_arn), CONTEXT)

    with slowed(sagemaker, "UpdateEndpoint"), counting(sagemaker, "UpdateEndpoint") as calls:
        results = race(deliver, deliver)
        # one deployed; the other met it (in progress, or the endpoint's lock) and is retried by SQS
        assert sorted(len(r["batchItemFailures"]) for r in results) == [0, 1]
        assert deliver() == {"batchItemFailures": []}
    assert calls.calls["UpdateEndpoint"] == 1
    assert world.serving_version() == 2
    assert [(d.action, d.result) for d in world.decisions(2)].count(("deploy", "deploying")) == 1


def test_deployment_outcome_the_same_endpoint_event_twice_at_once_records_one_outcome(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    world: Rollout = provision_rollout(stack, monkeypatch)
    world.live()  # loads the function
    world.notifications()
    v2 = world.approved()
    world.deliver(world.event(v2))
    event = ENDPOINT_EVENT.validate_python(world.endpoint_event())
    recorder = world.record.recorders["loans"]
    with slowed(recorder._hosting._sagemaker, "DescribeEndpoint"):
        results = race(*[lambda: recorder.handle(event)] * 2)
    # Then one recorded the outcome; the other found the endpoint's lock taken (retryable) or nothing new
    busy = [r for r in results if isinstance(r, EndpointBusyError)]
    decided = [r.result for r in results if not isinstance(r, Exception)]
    assert sorted(decided + ["busy"] * len(busy)) in (["busy", "live"], ["live", "unchanged"])
    assert all(r.retryable for r in busy)
    assert [recorder.handle(event).result for _ in busy] in ([], ["unchanged"])
    assert [d.result for d in world.decisions(2) if d.action == "record_outcome"] == ["live"]
    assert world.notifications() == []


def test_alarm_the_same_alarm_event_twice_at_once_starts_one_retraining(stack: Stack) -> None:
    retraining_world(stack)
    handler = load_handler("start_retraining")
    handler.retrainings["loans"].register_lambda_context(CONTEXT)
    event = parse_alarm_event(alarm_event(at=datetime.now(UTC)))
    with slowed(aws.sagemaker(), "StartPipelineExecution"):
        results = race(*[lambda: handler.retrainings["loans"].handle(event)] * 2)
    assert any(in_progress(r) for r in results)
    settled = retried(results, lambda: handler.retrainings["loans"].handle(event))
    assert [r.result for r in settled] == ["started", "started"]
    assert len({r.execution_arn for r in settled}) == 1
    assert len(pipeline_executions(stack)) == 1
    key = f"alarm:closedloop-loans-drift-features@{event.detail.state.timestamp}"
    assert [d.result for d in ledger(stack).decisions_for(key)] == ["started"]


def test_drift_monitor_the_same_schedule_twice_at_once_publishes_once(stack: Stack) -> None:
    drift_world(stack)
    handler = load_handler("drift_monitor")
    run = parse_drift_run(schedule_event())
    with slowed(aws.s3(), "ListObjectsV2"):
        results = race(*[lambda: handler.monitors["loans"].handle(run, remaining_s=lambda: 600.0)] * 2)
    # Then one measured and published; the other saw the run in progress and skipped
    assert sorted(r.result for r in results) == ["published", "skipped"]
    assert drift_datapoints(stack) == 1
