"""Routes 2 and 3 in template.yaml: their rules take the real events and nothing that only looks like them."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest

from closedloop_ops.local.loop import ROOT
from closedloop_ops.local.template import Template, load_template
from closedloop_ops.routing import route_event
from support.events import load_event

START = "StartTrainingFunction: functions/start_training/app.py::lambda_handler"
GATE = "ApprovalGateFunction: functions/approval_gate/app.py::lambda_handler"


@cache
def template() -> Template:
    return load_template(ROOT / "template.yaml")


def handlers(event: dict[str, Any]) -> list[str]:
    return [handler for match in route_event(event, template()).matches for handler in match.handlers]


@pytest.mark.parametrize("name", ["glue_job_state_change", "processing_job_state_change"])
def test_the_end_of_a_preparation_run_reaches_start_training(name: str) -> None:
    assert handlers(load_event(name)) == [START]


@pytest.mark.parametrize(
    ("name", "field", "values"),
    [
        ("glue_job_state_change", "state", ["SUCCEEDED", "FAILED", "TIMEOUT", "STOPPED"]),
        ("processing_job_state_change", "ProcessingJobStatus", ["Completed", "Failed", "Stopped"]),
    ],
)
def test_every_terminal_state_routes(name: str, field: str, values: list[str]) -> None:
    for value in values:
        event = load_event(name)
        event["detail"][field] = value
        assert handlers(event) == [START], value


@pytest.mark.parametrize(
    ("name", "mutate"),
    [
        ("glue_job_state_change", lambda e: e["detail"].update(state="RUNNING")),
        ("glue_job_state_change", lambda e: e.update({"detail-type": "Glue Job Run Status"})),
        ("glue_job_state_change", lambda e: e["detail"].update(jobName="closedloop-prep-other")),
        ("glue_job_state_change", lambda e: e["detail"].update(jobName="nightly-etl")),
        ("processing_job_state_change", lambda e: e["detail"].update(ProcessingJobStatus="InProgress")),
        ("processing_job_state_change", lambda e: e["detail"].update(ProcessingJobStatus="Stopping")),
        ("processing_job_state_change", lambda e: e["detail"].update(ProcessingJobName="closedloop-train-x")),
        ("processing_job_state_change", lambda e: e["detail"].update(ProcessingJobName="pipelines-abc-Evaluate-x")),
        ("processing_job_state_change", lambda e: e.update({"detail-type": "SageMaker Training Job State Change"})),
    ],
)
def test_look_alikes_reach_no_training_start(name: str, mutate: Any) -> None:
    event = load_event(name)
    mutate(event)
    assert START not in handlers(event)


@pytest.mark.parametrize("status", ["Succeeded", "Failed", "Stopped"])
def test_every_terminal_status_of_our_pipeline_reaches_the_gate(status: str) -> None:
    event = load_event("pipeline_execution_status_change")
    event["detail"]["currentPipelineExecutionStatus"] = status
    assert handlers(event) == [GATE]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e["detail"].update(currentPipelineExecutionStatus="Executing"),
        lambda e: e["detail"].update(currentPipelineExecutionStatus="Stopping"),
        lambda e: e["detail"].update(pipelineArn="arn:aws:sagemaker:eu-west-1:111122223333:pipeline/other-training"),
        lambda e: e["detail"].update(
            pipelineArn="arn:aws:sagemaker:eu-west-1:111122223333:pipeline/closedloop-training-old"
        ),
        lambda e: e.update({"detail-type": "SageMaker Model Building Pipeline Execution Step Status Change"}),
    ],
)
def test_look_alikes_reach_no_gate(mutate: Any) -> None:
    event = load_event("pipeline_execution_status_change")
    mutate(event)
    assert GATE not in handlers(event)


# The stack's own account and region, stated (route_event would otherwise assume the event's).
OURS = {"account": "111122223333", "region": "eu-west-1"}


def _elsewhere(event: dict[str, Any], account: str, region: str) -> dict[str, Any]:
    """The event as another account or region sends it: envelope and every ARN in it."""
    text = json.dumps(event).replace(":eu-west-1:111122223333:", f":{region}:{account}:")
    moved: dict[str, Any] = json.loads(text)
    moved["account"], moved["region"] = account, region
    return moved


@pytest.mark.parametrize(("account", "region"), [("999999999999", "eu-west-1"), ("111122223333", "us-east-1")])
def test_executions_and_prep_jobs_of_another_account_or_region_reach_nothing(account: str, region: str) -> None:
    # Given our own events reach their handlers when the stack's account and region are stated
    assert [
        h
        for m in route_event(load_event("pipeline_execution_status_change"), template(), **OURS).matches
        for h in m.handlers
    ] == [GATE]
    for name in ("pipeline_execution_status_change", "glue_job_state_change", "processing_job_state_change"):
        # When the same event comes from another account or region (a cross-account rule forwards it)
        event = _elsewhere(load_event(name), account, region)
        # Then no rule of the stack takes it
        assert route_event(event, template(), **OURS).matches == [], name


def test_an_execution_arn_of_another_account_in_our_envelope_reaches_no_gate() -> None:
    # Given an event in our envelope whose pipeline ARN names another account (the case)
    event = load_event("pipeline_execution_status_change")
    for field in ("pipelineArn", "pipelineExecutionArn"):
        event["detail"][field] = event["detail"][field].replace("111122223333", "999999999999")
    # Then the gate's rule does not match: it names the whole ARN, not only its end
    assert route_event(event, template(), **OURS).matches == []
