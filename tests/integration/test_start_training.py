"""Route 2 end to end on moto: the end of a preparation run → one pipeline execution, or a report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest

from closedloop import ledger_keys, lineage
from closedloop.errors import InvalidEventError, MissingEvidenceError
from closedloop.training.requests import client_request_token
from support.handlers import invoke, load_handler
from support.stack import REGION, Stack, notification_inbox
from support.training import (
    PIPELINE,
    create_pipeline,
    executions,
    glue_event,
    parameters_of,
    prepared_run,
    processing_event,
    start_glue_run,
)
from support.worlds import ledger

Inbox = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def inbox(stack: Stack) -> Inbox:
    """The notifications published to the stack's topic."""
    return notification_inbox(stack.settings, "notifications-inbox")


@pytest.fixture
def handler(stack: Stack) -> Any:
    create_pipeline()
    return load_handler("start_training")


def test_a_completed_processing_job_starts_the_pipeline_with_the_data_and_lineage(stack: Stack, handler: Any) -> None:
    # Given a preparation run that prepared 4000 rows
    run = prepared_run(stack)
    # When its Processing job's Completed event arrives
    outcome = invoke(handler, processing_event(run))
    # Then one execution runs, with the prepared data, the lineage and a token from the run
    assert outcome["result"] == "started"
    runs = executions()
    assert len(runs) == 1
    assert outcome["execution_arn"] == runs[0]["PipelineExecutionArn"]
    assert parameters_of(outcome["execution_arn"]) == {
        lineage.PARAM_INPUT_DATA: run.data_uri,
        lineage.PARAM_PREPARED_MANIFEST: run.prepared_manifest_uri,
        lineage.PARAM_PREP_RUN_ID: run.run_id,
        lineage.PARAM_CODE_VERSION: "9" * 64,
        lineage.PARAM_TRIGGER: "upload",
        lineage.PARAM_TRIGGER_REASON: (
            f"new prepared data: loans run {run.run_id}, 4000 rows from 1 files (0 quarantined)"
        ),
        lineage.PARAM_MODEL_GROUP: "closedloop-loans",
    }
    sm = boto3.client("sagemaker", region_name=REGION)
    arn = outcome["execution_arn"]
    assert sm.describe_pipeline_execution(PipelineExecutionArn=arn)["PipelineExecutionDisplayName"].startswith(
        "upload-"
    )
    # And the data is the group's latest prepared data (route 6 retrains on it)
    latest = ledger(stack).get_state(ledger_keys.latest_prepared("closedloop-loans"))
    assert latest is not None
    assert (latest["prepared_manifest_uri"], latest["data_uri"], latest["prep_run_id"], latest["dataset"]) == (
        run.prepared_manifest_uri,
        run.data_uri,
        run.run_id,
        "loans",
    )
    assert latest["code_version"] == "9" * 64
    # And the decision is in the ledger next to route 1's decisions for the same run
    decisions = ledger(stack).decisions_for(f"run:loans/{run.run_id}")
    assert [(d.route, d.action, d.result) for d in decisions] == [("data-prepared", "start_training", "started")]
    assert decisions[0].details["execution_arn"] == arn


def test_duplicates_and_the_other_engine_start_nothing_new(stack: Stack, handler: Any) -> None:
    run = prepared_run(stack)
    first = invoke(handler, processing_event(run))
    # When the same event comes again, again with a new envelope id, and the Glue run of the same prep run ends too
    again = invoke(handler, processing_event(run))
    renamed = invoke(handler, processing_event(run, event_id="another-envelope-id"))
    glue = invoke(handler, glue_event(start_glue_run(run)))
    # Then still one execution, and every answer names it
    assert len(executions()) == 1
    assert {again["execution_arn"], renamed["execution_arn"], glue["execution_arn"]} == {first["execution_arn"]}


def test_a_crash_after_the_start_is_healed_by_the_client_request_token(stack: Stack, handler: Any) -> None:
    # Given a started run whose idempotency record was lost (a crash before it was saved)
    run = prepared_run(stack)
    first = invoke(handler, processing_event(run))
    ddb = boto3.client("dynamodb", region_name=REGION)
    for item in ddb.scan(TableName=stack.settings.idempotency_table)["Items"]:
        ddb.delete_item(TableName=stack.settings.idempotency_table, Key={"id": item["id"]})
    # When the event is retried
    retried = invoke(handler, processing_event(run))
    # Then SageMaker's token dedupe returns the same execution
    assert retried["execution_arn"] == first["execution_arn"]
    assert len(executions()) == 1
    assert client_request_token("upload", run.run_id) == client_request_token("upload", run.run_id)


def test_a_glue_run_that_succeeds_starts_training_from_its_arguments(glue_stack: Stack) -> None:
    create_pipeline()
    handler = load_handler("start_training")
    run = prepared_run(glue_stack, "0a1b2c3d4e5f6a7b")
    outcome = invoke(handler, glue_event(start_glue_run(run)))
    assert (outcome["result"], outcome["engine"], outcome["run_id"]) == ("started", "glue", run.run_id)
    assert parameters_of(outcome["execution_arn"])[lineage.PARAM_PREP_RUN_ID] == run.run_id


def test_zero_rows_are_refused_recorded_and_notified(stack: Stack, handler: Any, inbox: Inbox) -> None:
    # Given a run whose every file was quarantined
    run = prepared_run(stack, rows=0)
    outcome = invoke(handler, processing_event(run))
    # Then nothing trains; the refusal is recorded and a person is told
    assert outcome["result"] == "refused"
    assert executions() == []
    assert ledger(stack).get_state(ledger_keys.latest_prepared("closedloop-loans")) is None
    [decision] = ledger(stack).decisions_for(f"run:loans/{run.run_id}")
    assert (decision.result, decision.details["quarantined_files"]) == ("refused", 2)
    [message] = inbox()
    assert message["severity"] == "WARNING" and "0 rows" in message["subject"]


@pytest.mark.parametrize(
    ("event_of", "state", "severity", "reason"),
    [
        (lambda run: processing_event(run, "Failed"), "failed", "ERROR", "unsupported manifest schema"),
        (lambda run: processing_event(run, "Stopped"), "stopped", "WARNING", "ended stopped"),
    ],
)
def test_a_failed_or_stopped_job_is_reported_not_retried(
    stack: Stack, handler: Any, inbox: Inbox, event_of: Any, state: str, severity: str, reason: str
) -> None:
    run = prepared_run(stack)
    outcome = invoke(handler, event_of(run))
    assert (outcome["result"], outcome["prep_state"]) == ("prep-failed", state)
    assert reason in outcome["reason"]
    assert executions() == []
    [decision] = ledger(stack).decisions_for(f"run:loans/{run.run_id}")
    assert decision.result == state and reason in decision.reason
    [message] = inbox()
    assert (message["severity"], message["state"], message["run_id"]) == (severity, state, run.run_id)
    # a duplicate of the failure notifies nobody twice
    invoke(handler, event_of(run))
    assert inbox() == []


@pytest.mark.parametrize("state", ["FAILED", "TIMEOUT", "STOPPED"])
def test_a_glue_run_that_fails_times_out_or_stops_is_reported(glue_stack: Stack, state: str) -> None:
    create_pipeline()
    handler = load_handler("start_training")
    run = prepared_run(glue_stack)
    outcome = invoke(handler, glue_event(start_glue_run(run), state, message=f"Job run {state.lower()}"))
    assert (outcome["result"], outcome["prep_state"]) == ("prep-failed", state.lower())
    assert executions() == []


def test_an_out_of_order_older_run_does_not_replace_the_latest_prepared_data(stack: Stack, handler: Any) -> None:
    newer = prepared_run(stack, "bbbbbbbbbbbbbbbb", created_at="2026-11-27T10:00:00+00:00")
    older = prepared_run(stack, "aaaaaaaaaaaaaaaa", created_at="2026-11-27T09:00:00+00:00")
    invoke(handler, processing_event(newer))
    late = invoke(handler, processing_event(older))
    # Both trained (each is new data), but "latest" stays the newest preparation
    assert late["result"] == "started" and not late["latest_prepared_updated"]
    assert len(executions()) == 2
    latest = ledger(stack).get_state(ledger_keys.latest_prepared("closedloop-loans"))
    assert latest is not None and latest["prep_run_id"] == newer.run_id


def test_the_run_is_found_through_describe_processing_job_when_the_event_lacks_arguments(
    stack: Stack, handler: Any
) -> None:
    # Given the job exists (as route 1 created it) and the event carries no AppSpecification
    run = prepared_run(stack)
    event = processing_event(run)
    name = event["detail"]["ProcessingJobName"]
    boto3.client("sagemaker", region_name=REGION).create_processing_job(
        ProcessingJobName=name,
        RoleArn=stack.settings.processing_role_arn,
        AppSpecification={
            "ImageUri": stack.settings.processing_image_uri,
            "ContainerArguments": ["--manifest", run.input_manifest_uri, "--run-id", run.run_id],
        },
        ProcessingResources={
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 30}
        },
    )
    del event["detail"]["AppSpecification"]
    assert invoke(handler, event)["result"] == "started"


@pytest.mark.parametrize(
    "change",
    [
        lambda e: e["detail"].update(ProcessingJobName="someone-elses-job-1"),
        lambda e: e["detail"]["AppSpecification"].update(ContainerArguments=["--verbose"]),
        lambda e: e["detail"]["AppSpecification"].update(
            ContainerArguments=["--manifest", "s3://elsewhere/x/input.json", "--run-id", "r"]
        ),
        lambda e: e["detail"]["AppSpecification"].update(
            ContainerArguments=["--manifest", "s3://another-bucket/manifests/loans/r/input.json", "--run-id", "r"]
        ),
    ],
)
def test_jobs_that_are_not_this_stacks_preparation_runs_are_invalid(stack: Stack, handler: Any, change: Any) -> None:
    event = processing_event(prepared_run(stack))
    change(event)
    with pytest.raises(InvalidEventError):
        invoke(handler, event)
    assert executions() == []


def test_another_glue_job_is_invalid(glue_stack: Stack) -> None:
    create_pipeline()
    handler = load_handler("start_training")
    event = glue_event("jr_1")
    event["detail"]["jobName"] = "nightly-etl"
    with pytest.raises(InvalidEventError):
        invoke(handler, event)


def test_a_malformed_event_is_an_invalid_event(stack: Stack, handler: Any) -> None:
    event = processing_event(prepared_run(stack))
    event["detail"]["ProcessingJobStatus"] = "InProgress"
    with pytest.raises(InvalidEventError, match="not the terminal state change"):
        invoke(handler, event)


def test_a_missing_prepared_manifest_is_recorded_and_raised(stack: Stack, handler: Any) -> None:
    run = prepared_run(stack, write_prepared=False)
    with pytest.raises(MissingEvidenceError):
        invoke(handler, processing_event(run))
    [decision] = ledger(stack).decisions_for(f"run:loans/{run.run_id}")
    assert decision.result == "failed" and "prepared manifest" in decision.reason
    assert executions() == []


def test_a_pipeline_that_was_never_upserted_fails_the_start_loudly(stack: Stack) -> None:
    handler = load_handler("start_training")  # no pipeline created
    run = prepared_run(stack)
    with pytest.raises(Exception, match="StartPipelineExecution"):
        invoke(handler, processing_event(run))
    [decision] = ledger(stack).decisions_for(f"run:loans/{run.run_id}")
    assert decision.result == "failed" and decision.details["pipeline"] == PIPELINE
