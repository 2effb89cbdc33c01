"""SageMaker answers 30 % of calls with ThrottlingException: no event is lost, every route gets there.

The throttling is injected on the function's own SageMaker client at `before-call` (seeded), so it
reaches closedloop's code as throttling the client's adaptive retries could not absorb — the worst
case. The event then comes back the way its source brings it back:
* EventBridge → Lambda (routes 2, 3, 5, 6, 7): Lambda's two retries, then the on-failure
  destination, from where `closedloop dlq redrive` sends it again;
* SQS (routes 1, 4): the queue redelivers the records reported as batch item failures, and moves
  them to their DLQ after `maxReceiveCount` receives (5 for uploads, 60 for approvals).
Every error on the way must say it is retryable (an SQS route dead-letters what is not at once), and
the end state must be the clean run's: one job, one execution, one status change, one update.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from closedloop import aws
from closedloop.errors import ClosedloopError
from support.events import object_created, sqs_batch
from support.faults import Injected, counting, throttled
from support.handlers import FakeLambdaContext, load_handler
from support.rollout import Rollout, provision_rollout
from support.stack import Stack
from support.training import create_pipeline, pipeline_event, prepared_run, processing_event
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

RATE = 0.3
# Per route; each seed is one whose sequence throttles the route's calls at least twice (few calls,
# so some seeds throttle none of them, which would test nothing).
SEEDS = {1: 31, 2: 32, 3: 33, 4: 44, 5: 45, 6: 66, 7: 57}
LAMBDA_ATTEMPTS = 3  # the first invocation and Lambda's two retries (EventInvokeConfig)
MAX_DELIVERIES = 60


@dataclass
class Delivery:
    """How an event got through: invocations, and how often its retries ran out (DLQ, then redrive)."""

    result: Any = None
    invocations: int = 0
    dead_lettered: int = 0


def through_lambda_retries(invoke: Callable[[], Any]) -> Delivery:
    """Invoke until it succeeds, as Lambda's async retries and a redrive from the DLQ would."""
    delivery = Delivery()
    while delivery.invocations < MAX_DELIVERIES:
        delivery.invocations += 1
        try:
            delivery.result = invoke()
        except ClosedloopError as exc:
            assert exc.retryable, f"throttling surfaced as an error no retry can help: {exc.as_dict()}"
            if delivery.invocations % LAMBDA_ATTEMPTS == 0:
                delivery.dead_lettered += 1
            continue
        return delivery
    raise AssertionError(f"still failing after {MAX_DELIVERIES} deliveries")


def through_sqs_redelivery(deliver: Callable[[], dict[str, Any]], max_receives: int) -> Delivery:
    """Deliver until no record is reported failed, as SQS redelivery (and a DLQ redrive) would."""
    delivery = Delivery()
    while delivery.invocations < MAX_DELIVERIES:
        delivery.invocations += 1
        delivery.result = deliver()
        if not delivery.result["batchItemFailures"]:
            return delivery
        if delivery.invocations % max_receives == 0:
            delivery.dead_lettered += 1
    raise AssertionError(f"still failing after {MAX_DELIVERIES} deliveries")


def throttling_hit(injected: Injected, delivery: Delivery) -> None:
    """The fault really was in the way (every route meets it twice or more); the numbers show with `pytest -s`."""
    assert injected.total_faults >= 2, injected
    calls = sum(injected.calls.values())
    print(
        f"throttled {injected.total_faults} of {calls} SageMaker calls; "
        f"{delivery.invocations} deliveries, {delivery.dead_lettered} times through the DLQ"
    )


def test_data_arrival_throttled_starts_one_job(stack: Stack) -> None:
    handler = load_handler("start_data_prep")
    batch = sqs_batch([object_created(stack.data_bucket, "raw/loans/throttled/a.csv", version_id="v-1")])
    with throttled(aws.sagemaker(), rate=RATE, seed=SEEDS[1]) as injected:
        delivery = through_sqs_redelivery(lambda: handler.lambda_handler(batch, FakeLambdaContext()), 5)
    throttling_hit(injected, delivery)
    assert len(processing_jobs(stack)) == 1
    [job] = processing_jobs(stack)
    decisions = ledger(stack).decisions_for(f"run:loans/{job.rsplit('-', 1)[1]}")
    assert [d.result for d in decisions if d.result == "started"] == ["started"]
    assert all(d.details.get("retryable") for d in decisions if d.result == "failed")
    assert delivery.invocations >= 1


def test_data_prepared_throttled_starts_one_execution(stack: Stack) -> None:
    create_pipeline()
    handler = load_handler("start_training")
    event = processing_event(prepared_run(stack))
    with throttled(aws.sagemaker(), rate=RATE, seed=SEEDS[2]) as injected:
        delivery = through_lambda_retries(lambda: handler.lambda_handler(event, FakeLambdaContext()))
    throttling_hit(injected, delivery)
    assert delivery.result["result"] == "started"
    assert [e["PipelineExecutionArn"] for e in pipeline_executions(stack)] == [delivery.result["execution_arn"]]


def test_pipeline_finished_throttled_decides_once(stack: Stack) -> None:
    create_pipeline()
    gate = load_handler("approval_gate")
    execution, arn = executed_version(stack)
    event = pipeline_event(execution)
    with (
        throttled(aws.sagemaker(), rate=RATE, seed=SEEDS[3]) as injected,
        counting(aws.sagemaker(), "UpdateModelPackage") as updates,
    ):
        delivery = through_lambda_retries(lambda: gate.lambda_handler(event, FakeLambdaContext()))
    throttling_hit(injected, delivery)
    assert delivery.result["result"] == "approved"
    assert approval_status(stack, arn) == "Approved"
    assert updates.calls["UpdateModelPackage"] == 1
    assert [d.result for d in ledger(stack).decisions_for(arn)] == ["approved"]


def test_model_approval_throttled_updates_the_endpoint_once(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    world: Rollout = provision_rollout(stack, monkeypatch)
    world.live()
    v2 = world.approved()
    event = world.event(v2)
    sagemaker = world.deploy.approvals._rollouts["loans"]._hosting._sagemaker
    with (
        throttled(sagemaker, rate=RATE, seed=SEEDS[4]) as injected,
        counting(sagemaker, "UpdateEndpoint", "CreateEndpoint") as updates,
    ):
        delivery = through_sqs_redelivery(lambda: world.deliver(event), 60)
    throttling_hit(injected, delivery)
    assert delivery.dead_lettered == 0
    assert updates.calls == {"UpdateEndpoint": 1}
    assert world.serving_version() == 2
    # nothing was dead-lettered by throttling: every failure was left on the queue for a retry
    assert not [d for d in world.decisions(2) if d.action == "handle_event"]


def test_deployment_outcome_throttled_records_one_outcome(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    world: Rollout = provision_rollout(stack, monkeypatch)
    world.live()
    v2 = world.approved()
    world.deliver(world.event(v2))
    event = world.endpoint_event()
    sagemaker = world.record.recorders["loans"]._hosting._sagemaker
    with throttled(sagemaker, rate=RATE, seed=SEEDS[5]) as injected:
        delivery = through_lambda_retries(lambda: world.outcome(event))
    throttling_hit(injected, delivery)
    assert delivery.result["result"] == "live"
    assert [d.result for d in world.decisions(2) if d.action == "record_outcome"] == ["live"]
    assert world.state()["live_version"] == 2
    assert world.package_tags(1)["closedloop:deployment-outcome"] == "superseded"


def test_alarm_throttled_starts_one_retraining(stack: Stack) -> None:
    retraining_world(stack)
    handler = load_handler("start_retraining")
    event = alarm_event(at=datetime.now(UTC))
    with throttled(aws.sagemaker(), rate=RATE, seed=SEEDS[6]) as injected:
        delivery = through_lambda_retries(lambda: handler.lambda_handler(event, FakeLambdaContext()))
    throttling_hit(injected, delivery)
    assert delivery.result["result"] == "started"
    assert [e["PipelineExecutionArn"] for e in pipeline_executions(stack)] == [delivery.result["execution_arn"]]
    lock = ledger(stack).get_lock("retrain#closedloop-loans")
    assert lock is not None and lock.execution_arn == delivery.result["execution_arn"]


def test_drift_monitor_throttled_publishes_once(stack: Stack) -> None:
    drift_world(stack)
    handler = load_handler("drift_monitor")
    event = schedule_event()
    with throttled(aws.sagemaker(), rate=RATE, seed=SEEDS[7]) as injected:
        delivery = through_lambda_retries(
            lambda: handler.lambda_handler(event, FakeLambdaContext(remaining_ms=600_000))
        )
    throttling_hit(injected, delivery)
    assert delivery.result["result"] == "published"
    assert drift_datapoints(stack) == 1
