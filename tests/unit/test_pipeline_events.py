"""Route 3's event model: a pipeline execution's terminal status, in both timestamp formats."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from closedloop.errors import InvalidEventError
from closedloop.events.pipeline import parse_pipeline_execution_event
from support.events import load_event

EXECUTION = "arn:aws:sagemaker:eu-west-1:111122223333:pipeline/closedloop-training/execution/k3x9p2m7q4w1"


def test_the_canonical_sample_parses() -> None:
    parsed = parse_pipeline_execution_event(load_event("pipeline_execution_status_change"))
    assert parsed.detail.status == "Succeeded"
    assert parsed.detail.execution_arn == EXECUTION
    assert parsed.detail.pipeline_name == "closedloop-training"
    assert parsed.detail.ended_at == datetime(2026, 11, 27, 9, 48, 54, tzinfo=UTC)


@pytest.mark.parametrize("value", ["2026-11-27T09:48:54Z", "2026-11-27T09:48:54.000Z", 1795772934000, "1795772934000"])
def test_iso_and_epoch_millisecond_times_are_the_same_instant(value: Any) -> None:
    event = load_event("pipeline_execution_status_change")
    event["detail"]["executionEndTime"] = value
    assert parse_pipeline_execution_event(event).detail.ended_at == datetime(2026, 11, 27, 9, 48, 54, tzinfo=UTC)


@pytest.mark.parametrize("status", ["Succeeded", "Failed", "Stopped"])
def test_every_terminal_status_parses(status: str) -> None:
    event = load_event("pipeline_execution_status_change")
    event["detail"]["currentPipelineExecutionStatus"] = status
    assert parse_pipeline_execution_event(event).detail.status == status


def _variant(change: Any) -> dict[str, Any]:
    event = copy.deepcopy(load_event("pipeline_execution_status_change"))
    change(event)
    return event


@pytest.mark.parametrize(
    ("event", "why"),
    [
        (_variant(lambda e: e["detail"].update(currentPipelineExecutionStatus="Executing")), "not terminal"),
        (_variant(lambda e: e["detail"].update(currentPipelineExecutionStatus="Stopping")), "not terminal"),
        (
            _variant(
                lambda e: e.update({"detail-type": "SageMaker Model Building Pipeline Execution Step Status Change"})
            ),
            "a step event",
        ),
        (_variant(lambda e: e["detail"].update(pipelineExecutionArn="not-an-arn")), "malformed ARN"),
        (
            _variant(
                lambda e: e["detail"].update(
                    pipelineExecutionArn="arn:aws:sagemaker:eu-west-1:111122223333:pipeline/other/execution/abc"
                )
            ),
            "execution of another pipeline than named",
        ),
        (_variant(lambda e: e["detail"].pop("pipelineArn")), "no pipeline"),
        (_variant(lambda e: e["detail"].update(executionEndTime="soon")), "bad time"),
        (_variant(lambda e: e.update(source="aws.events")), "wrong source"),
    ],
)
def test_look_alikes_and_malformed_details_are_rejected(event: dict[str, Any], why: str) -> None:
    with pytest.raises(InvalidEventError) as raised:
        parse_pipeline_execution_event(event)
    assert raised.value.context["problems"], why
