"""The idempotency store is unavailable: nothing happens before the lock is taken — no job, no
execution, no status change, no endpoint change — and the event comes back (a retryable error, or a
batch item failure), so it is handled once the store answers again.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from closedloop import aws
from closedloop.errors import AwsServiceError
from support.events import object_created, sqs_batch
from support.faults import unreachable_table
from support.handlers import FakeLambdaContext, load_handler
from support.rollout import Rollout, provision_rollout
from support.stack import Stack
from support.training import create_pipeline, pipeline_event, prepared_run, processing_event
from support.worlds import (
    alarm_event,
    approval_status,
    executed_version,
    ledger,
    pipeline_executions,
    processing_jobs,
    retraining_world,
)


def test_data_arrival_starts_no_job_and_returns_the_records(stack: Stack) -> None:
    handler = load_handler("start_data_prep")
    batch = sqs_batch([object_created(stack.data_bucket, "raw/loans/store/a.csv", version_id="v-1")])
    with unreachable_table(aws.dynamodb(), stack.settings.idempotency_table) as store:
        response = handler.lambda_handler(batch, FakeLambdaContext())
    assert store.total_faults >= 1
    assert len(response["batchItemFailures"]) == 1
    assert processing_jobs(stack) == []
    [failed] = [d for d in ledger(stack).decisions_since(datetime(2000, 1, 1, tzinfo=UTC)) if d.result == "failed"]
    assert (failed.reason, failed.details["retryable"]) == ("idempotency store unavailable", True)
    # once the store answers, the redelivered records start the run
    assert handler.lambda_handler(batch, FakeLambdaContext()) == {"batchItemFailures": []}
    assert len(processing_jobs(stack)) == 1


def test_data_prepared_starts_no_execution_and_raises_a_retryable_error(stack: Stack) -> None:
    create_pipeline()
    handler = load_handler("start_training")
    event = processing_event(prepared_run(stack))
    with unreachable_table(aws.dynamodb(), stack.settings.idempotency_table), pytest.raises(AwsServiceError) as error:
        handler.lambda_handler(event, FakeLambdaContext())
    assert error.value.retryable and error.value.message == "idempotency store unavailable"
    assert pipeline_executions(stack) == []
    assert handler.lambda_handler(event, FakeLambdaContext())["result"] == "started"


def test_pipeline_finished_changes_no_status_and_raises_a_retryable_error(stack: Stack) -> None:
    create_pipeline()
    gate = load_handler("approval_gate")
    execution, arn = executed_version(stack)
    with unreachable_table(aws.dynamodb(), stack.settings.idempotency_table), pytest.raises(AwsServiceError) as error:
        gate.lambda_handler(pipeline_event(execution), FakeLambdaContext())
    assert error.value.retryable
    assert approval_status(stack, arn) == "PendingManualApproval"
    assert ledger(stack).decisions_for(arn) == []


def test_model_approval_changes_no_endpoint_and_stays_on_the_queue(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    world: Rollout = provision_rollout(stack, monkeypatch)
    arn = world.register()
    world.set_status(arn, "Approved")
    world.deliver()  # loads the function
    dynamodb = world.deploy.approvals._rollouts["loans"]._state._ledger._client
    with unreachable_table(dynamodb, stack.settings.idempotency_table):
        response = world.deliver(world.event(arn))
    assert len(response["batchItemFailures"]) == 1
    assert world.models() == [] and world.endpoint_configs() == []
    assert world.sm.list_endpoints()["Endpoints"] == []
    assert world.sqs.receive_message(QueueUrl=world.dlq_url).get("Messages", []) == []
    assert world.deliver(world.event(arn)) == {"batchItemFailures": []}
    assert world.serving_version() == 1


def test_alarm_starts_no_retraining_takes_no_lock_and_raises_a_retryable_error(stack: Stack) -> None:
    retraining_world(stack)
    handler = load_handler("start_retraining")
    event = alarm_event(at=datetime.now(UTC))
    with unreachable_table(aws.dynamodb(), stack.settings.idempotency_table), pytest.raises(AwsServiceError) as error:
        handler.lambda_handler(event, FakeLambdaContext())
    assert error.value.retryable
    assert pipeline_executions(stack) == []
    assert ledger(stack).get_lock("retrain#closedloop-loans") is None
    assert handler.lambda_handler(event, FakeLambdaContext())["result"] == "started"
