"""A handler that dies after its side effect and before its records: the retry starts nothing new.

The crash is a `Crash` (a BaseException, like Lambda killing a timed-out invocation) raised right
after the side-effect call returned from AWS, so neither the idempotency record nor the ledger
saw the outcome. The crashed invocation ran with no time left, so its in-progress idempotency
record has expired by the time the event comes back — as after a real timeout. The retry must
find the job, execution or update by its deterministic name or token and start nothing new.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from closedloop import aws, ledger_keys
from closedloop.ledger import Decision, Ledger
from support.events import object_created, sqs_batch
from support.faults import Crash, counting, crash_after
from support.handlers import FakeLambdaContext, invoke, load_handler
from support.rollout import Rollout, provision_rollout
from support.stack import REGION, Stack
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

DYING = FakeLambdaContext(remaining_ms=0)  # its in-progress record expires at once, as after a timeout


def test_data_arrival_crash_after_create_processing_job_is_healed_by_the_job_name(stack: Stack) -> None:
    # Given a batch whose Processing job was created just before the function died
    handler = load_handler("start_data_prep")
    batch = sqs_batch([object_created(stack.data_bucket, "raw/loans/crash/a.csv", version_id="v-1")])
    with crash_after(aws.sagemaker(), "CreateProcessingJob") as crash, pytest.raises(Crash):
        handler.lambda_handler(batch, DYING)
    assert crash.total_faults == 1
    [job] = processing_jobs(stack)
    records = ledger(stack)
    assert records.consumed_objects([f"{stack.data_bucket}/raw/loans/crash/a.csv#v-1"]) == {}
    # When SQS delivers the batch again after the visibility timeout
    with counting(aws.sagemaker(), "CreateProcessingJob") as calls:
        response = invoke(handler, batch)
    # Then the job is found by its deterministic name: none created, the records completed
    assert response == {"batchItemFailures": []}
    assert calls.calls["CreateProcessingJob"] == 0
    assert processing_jobs(stack) == [job]
    run_id = job.rsplit("-", 1)[1]
    [decision] = records.decisions_for(f"run:loans/{run_id}")
    assert (decision.result, decision.reason) == ("started", "found already running")
    assert records.consumed_objects([f"{stack.data_bucket}/raw/loans/crash/a.csv#v-1"])


def test_data_arrival_crash_after_glue_start_job_run_is_healed_by_the_run_id_argument(glue_stack: Stack) -> None:
    handler = load_handler("start_data_prep")
    batch = sqs_batch([object_created(glue_stack.data_bucket, "raw/loans/crash/b.csv", version_id="v-1")])
    with crash_after(aws.glue(), "StartJobRun"), pytest.raises(Crash):
        handler.lambda_handler(batch, DYING)
    glue = boto3.client("glue", region_name=REGION)
    [run] = glue.get_job_runs(JobName="closedloop-prep")["JobRuns"]
    # When the batch comes back
    with counting(aws.glue(), "StartJobRun") as calls:
        assert invoke(handler, batch) == {"batchItemFailures": []}
    # Then the run is found by its --run-id argument; no second run
    assert calls.calls["StartJobRun"] == 0
    assert [r["Id"] for r in glue.get_job_runs(JobName="closedloop-prep")["JobRuns"]] == [run["Id"]]
    [decision] = ledger(glue_stack).decisions_for(f"run:loans/{run['Arguments']['--run-id']}")
    assert (decision.result, decision.details["job_run_id"]) == ("started", run["Id"])


def test_data_prepared_crash_after_start_pipeline_execution_is_healed_by_the_client_request_token(
    stack: Stack,
) -> None:
    create_pipeline()
    handler = load_handler("start_training")
    run = prepared_run(stack)
    event = processing_event(run)
    with crash_after(aws.sagemaker(), "StartPipelineExecution"), pytest.raises(Crash):
        handler.lambda_handler(event, DYING)
    [started] = pipeline_executions(stack)
    records = ledger(stack)
    assert records.decisions_for(f"run:loans/{run.run_id}") == []
    assert records.get_state(ledger_keys.latest_prepared("closedloop-loans")) is None
    # When Lambda retries the event
    outcome = invoke(handler, event)
    # Then SageMaker's token dedupe answers with the execution already running; the records catch up
    assert (outcome["result"], outcome["execution_arn"]) == ("started", started["PipelineExecutionArn"])
    assert len(pipeline_executions(stack)) == 1
    latest = records.get_state(ledger_keys.latest_prepared("closedloop-loans"))
    assert latest is not None and latest["prep_run_id"] == run.run_id
    assert [d.result for d in records.decisions_for(f"run:loans/{run.run_id}")] == ["started"]


def test_pipeline_finished_crash_after_update_model_package_reapplies_the_recorded_decision(stack: Stack) -> None:
    create_pipeline()
    gate = load_handler("approval_gate")
    execution, arn = executed_version(stack)
    event = pipeline_event(execution)
    with crash_after(aws.sagemaker(), "UpdateModelPackage"), pytest.raises(Crash):
        gate.lambda_handler(event, DYING)
    assert approval_status(stack, arn) == "Approved"
    # When Lambda retries the event
    with counting(aws.sagemaker(), "UpdateModelPackage") as calls:
        outcome = invoke(gate, event)
    # Then the same decision stands: no second status change, one approval in the ledger
    assert outcome["result"] == "approved"
    assert calls.calls["UpdateModelPackage"] == 0
    assert [d.result for d in ledger(stack).decisions_for(arn)] == ["approved"]


def test_model_approval_crash_after_update_endpoint_finds_the_version_serving(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    world: Rollout = provision_rollout(stack, monkeypatch)
    world.live()
    v2 = world.approved()
    batch = sqs_batch([world.event(v2)], queue_arn=world.queue_arn)
    sagemaker = world.deploy.approvals._rollouts["loans"]._hosting._sagemaker  # the deploy function's own client
    # When the function dies right after UpdateEndpoint
    with crash_after(sagemaker, "UpdateEndpoint"), pytest.raises(Crash):
        world.deploy.lambda_handler(batch, DYING)
    assert world.serving_version() == 2
    assert world.state()["pending_model_package_arn"] == ""  # the deployment was never recorded
    # And SQS delivers the approval again
    with counting(sagemaker, "UpdateEndpoint", "CreateEndpoint") as calls:
        assert world.deploy.lambda_handler(batch, FakeLambdaContext()) == {"batchItemFailures": []}
    # Then the endpoint's own config says the version serves already: nothing is deployed twice
    assert sum(calls.calls.values()) == 0
    assert world.decisions(2)[-1].result == "already_live"
    assert len(world.endpoint_configs()) == 2


def test_alarm_crash_after_start_pipeline_execution_binds_its_own_execution(stack: Stack) -> None:
    retraining_world(stack)
    handler = load_handler("start_retraining")
    event = alarm_event(at=datetime.now(UTC))
    with crash_after(aws.sagemaker(), "StartPipelineExecution"), pytest.raises(Crash):
        handler.lambda_handler(event, DYING)
    [started] = pipeline_executions(stack)
    records = ledger(stack)
    assert records.get_state(ledger_keys.cooldown("closedloop-loans")) is None
    # When Lambda retries the event
    with counting(aws.sagemaker(), "StartPipelineExecution") as calls:
        outcome = invoke(handler, event)
    # Then the running execution is recognised as its own (display name from the token) and bound
    assert (outcome["result"], outcome["found_existing"]) == ("started", True)
    assert outcome["execution_arn"] == started["PipelineExecutionArn"]
    assert calls.calls["StartPipelineExecution"] == 0
    assert len(pipeline_executions(stack)) == 1
    lock = records.get_lock("retrain#closedloop-loans")
    assert lock is not None and lock.execution_arn == started["PipelineExecutionArn"]
    assert records.get_state(ledger_keys.cooldown("closedloop-loans")) is not None


@contextmanager
def dying_at_ledger_write(result: str) -> Iterator[list[str]]:
    """The function dies at its first ledger write of `result`: after the side effect, before the record."""
    original = Ledger.record
    died: list[str] = []

    def record(ledger: Ledger, decision: Decision) -> Any:
        if decision.result == result and not died:
            died.append(decision.business_key)
            raise Crash(f"the invocation died before writing {result}")
        return original(ledger, decision)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Ledger, "record", record)
        yield died


def test_data_arrival_death_before_the_ledger_write_still_records_why_the_job_started(stack: Stack) -> None:
    # Given a batch whose job started and whose objects were taken, and then the function died
    handler = load_handler("start_data_prep")
    batch = sqs_batch([object_created(stack.data_bucket, "raw/loans/crash/c.csv", version_id="v-1")])
    with dying_at_ledger_write("started") as died, pytest.raises(Crash):
        handler.lambda_handler(batch, DYING)
    [run_key] = died
    [job] = processing_jobs(stack)
    records = ledger(stack)
    assert records.decisions_for(run_key) == []
    # When SQS delivers the batch again (the objects are already taken: a "duplicate")
    assert invoke(handler, batch) == {"batchItemFailures": []}
    # Then the ledger explains the job: the original "started" first, then the duplicate
    started, duplicate = records.decisions_for(run_key)
    assert (started.result, started.details["job"], started.details["recovered"]) == ("started", job, True)
    assert duplicate.result == "duplicate"
    assert records.open_intents() == []
    assert processing_jobs(stack) == [job]


def test_model_approval_death_before_the_ledger_write_still_records_the_deployment(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    world: Rollout = provision_rollout(stack, monkeypatch)
    world.live()
    v2 = world.approved()
    batch = sqs_batch([world.event(v2)], queue_arn=world.queue_arn)
    # When the function dies after UpdateEndpoint, at its "deploying" record
    with dying_at_ledger_write("deploying"), pytest.raises(Crash):
        world.deploy.lambda_handler(batch, DYING)
    assert world.serving_version() == 2
    # And SQS delivers the approval again
    assert world.deploy.lambda_handler(batch, FakeLambdaContext()) == {"batchItemFailures": []}
    # Then the deployment's decision is in the ledger, before what the retry saw
    results = [(d.result, d.details.get("recovered", False)) for d in world.decisions(2)]
    assert ("deploying", True) in results
    assert results.index(("deploying", True)) < results.index(("already_live", False))
    [deploying] = [d for d in world.decisions(2) if d.result == "deploying"]
    assert deploying.reason.startswith("approved; recorded on retry")
    assert deploying.details["endpoint_config"] == world.endpoint_configs()[-1]
