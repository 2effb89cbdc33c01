"""A service quota is exhausted (SageMaker `ResourceLimitExceeded`, Glue `ConcurrentRunsExceededException`):
the event is deferred with the reason — a retryable error or a batch item failure — never retried hot.

The error answers the HTTP attempt itself (`before-send`, below the client's retry handler), so the
attempt count shows the client gave up at once and the route did not loop: one attempt per
delivery. The retry belongs to the event source (SQS visibility, Lambda's retry delays), which
comes back minutes later, when a run may have finished.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from closedloop import aws
from closedloop.errors import ResourceLimitError
from support.events import object_created, sqs_batch
from support.faults import failing
from support.handlers import FakeLambdaContext, load_handler
from support.rollout import Rollout, provision_rollout
from support.stack import REGION, Stack
from support.training import create_pipeline, prepared_run, processing_event
from support.worlds import alarm_event, ledger, pipeline_executions, processing_jobs, retraining_world

QUOTA = "The account-level service limit 'ml.m5.large for processing job usage' is 4 Instances"


def test_data_arrival_processing_quota_defers_the_records_with_the_reason(stack: Stack) -> None:
    handler = load_handler("start_data_prep")
    batch = sqs_batch([object_created(stack.data_bucket, "raw/loans/quota/a.csv", version_id="v-1")])
    with failing(aws.sagemaker(), "CreateProcessingJob", "ResourceLimitExceeded", QUOTA) as quota:
        response = handler.lambda_handler(batch, FakeLambdaContext())
    # Then the record comes back through SQS; one attempt was made; the reason is in the ledger
    assert response == {"batchItemFailures": [{"itemIdentifier": batch["Records"][0]["messageId"]}]}
    assert quota.calls["CreateProcessingJob"] == 1
    assert processing_jobs(stack) == []
    [failed] = [d for d in ledger(stack).decisions_since(datetime(2000, 1, 1, tzinfo=UTC)) if d.result == "failed"]
    assert (failed.details["error"], failed.details["retryable"]) == ("ResourceLimitExceeded", True)
    assert QUOTA in failed.reason
    # And the redelivery, once the quota has room, starts the run
    assert handler.lambda_handler(batch, FakeLambdaContext()) == {"batchItemFailures": []}
    assert len(processing_jobs(stack)) == 1


def test_data_arrival_glue_concurrent_runs_defers_the_records_with_the_reason(glue_stack: Stack) -> None:
    import boto3

    handler = load_handler("start_data_prep")
    batch = sqs_batch([object_created(glue_stack.data_bucket, "raw/loans/quota/b.csv", version_id="v-1")])
    message = "Concurrent runs exceeded for closedloop-prep"
    with failing(aws.glue(), "StartJobRun", "ConcurrentRunsExceededException", message) as quota:
        response = handler.lambda_handler(batch, FakeLambdaContext())
    assert len(response["batchItemFailures"]) == 1
    assert quota.calls["StartJobRun"] == 1
    glue = boto3.client("glue", region_name=REGION)
    assert glue.get_job_runs(JobName="closedloop-prep")["JobRuns"] == []
    [failed] = [d for d in ledger(glue_stack).decisions_since(datetime(2000, 1, 1, tzinfo=UTC)) if d.result == "failed"]
    assert (failed.details["aws_error"], failed.details["retryable"]) == ("ConcurrentRunsExceededException", True)
    assert handler.lambda_handler(batch, FakeLambdaContext()) == {"batchItemFailures": []}
    assert len(glue.get_job_runs(JobName="closedloop-prep")["JobRuns"]) == 1


def test_data_prepared_pipeline_quota_raises_a_retryable_error_with_the_reason(stack: Stack) -> None:
    create_pipeline()
    handler = load_handler("start_training")
    run = prepared_run(stack)
    event = processing_event(run)
    with (
        failing(aws.sagemaker(), "StartPipelineExecution", "ResourceLimitExceeded", "concurrent executions") as quota,
        pytest.raises(ResourceLimitError) as deferred,
    ):
        handler.lambda_handler(event, FakeLambdaContext())
    # Then Lambda's retry (minutes later) brings the event back; one attempt now; the reason is recorded
    assert deferred.value.retryable
    assert quota.calls["StartPipelineExecution"] == 1
    assert pipeline_executions(stack) == []
    [failed] = ledger(stack).decisions_for(f"run:loans/{run.run_id}")
    assert failed.result == "failed" and "concurrent executions" in failed.reason
    assert handler.lambda_handler(event, FakeLambdaContext())["result"] == "started"


def test_alarm_pipeline_quota_frees_the_lock_and_raises_a_retryable_error(stack: Stack) -> None:
    retraining_world(stack)
    handler = load_handler("start_retraining")
    event = alarm_event(at=datetime.now(UTC))
    with (
        failing(aws.sagemaker(), "StartPipelineExecution", "ResourceLimitExceeded", "concurrent executions") as quota,
        pytest.raises(ResourceLimitError),
    ):
        handler.lambda_handler(event, FakeLambdaContext())
    assert quota.calls["StartPipelineExecution"] == 1
    records = ledger(stack)
    assert records.get_lock("retrain#closedloop-loans") is None  # nothing holds the group meanwhile
    [failed] = records.decisions_for(f"alarm:closedloop-loans-drift-features@{event['detail']['state']['timestamp']}")
    assert (failed.result, failed.details["error"]) == ("failed", "ResourceLimitExceeded")
    assert handler.lambda_handler(event, FakeLambdaContext())["result"] == "started"


def test_model_approval_endpoint_quota_backs_off_on_the_queue(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    world: Rollout = provision_rollout(stack, monkeypatch)
    arn = world.register()
    world.set_status(arn, "Approved")
    world.deliver()  # loads the function
    sagemaker = world.deploy.approvals._rollouts["loans"]._hosting._sagemaker
    with failing(sagemaker, "CreateEndpoint", "ResourceLimitExceeded", "ml.m5.large for endpoint usage") as quota:
        response, message = world.deliver_through_queue(world.event(arn))
    # Then the record stays on the queue, invisible for the backoff, with the reason in the ledger
    assert response == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}
    assert quota.calls["CreateEndpoint"] == 1
    [retry] = world.ledger.decisions_for(f"sqs:{message['MessageId']}")
    assert (retry.result, retry.details["error"], retry.details["retry_in_s"]) == (
        "retry_later",
        "ResourceLimitExceeded",
        60,
    )
    assert world.sqs.receive_message(QueueUrl=world.queue_url).get("Messages", []) == []
    assert world.sqs.receive_message(QueueUrl=world.dlq_url).get("Messages", []) == []
