"""Pins the moto behaviour routes 2 and 3 rely on: idempotent pipeline starts, and execution steps."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from closedloop_ops import moto_ext
from closedloop_ops.moto_ext.pipelines import record_execution_step
from support.stack import ACCOUNT, REGION
from support.training import create_pipeline

PACKAGE = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/closedloop-loans/1"


@pytest.fixture
def sagemaker() -> Iterator[Any]:
    from moto import mock_aws

    moto_ext.install()
    with mock_aws():
        create_pipeline()
        yield boto3.client("sagemaker", region_name=REGION)


def start(sagemaker: Any, token: str) -> str:
    arn: str = sagemaker.start_pipeline_execution(PipelineName="closedloop-training", ClientRequestToken=token)[
        "PipelineExecutionArn"
    ]
    return arn


def test_a_repeated_client_request_token_returns_the_first_execution(sagemaker: Any) -> None:
    # AWS: an idempotent start completes no more than once per token; moto alone starts one per call
    first = start(sagemaker, "a" * 64)
    assert start(sagemaker, "a" * 64) == first
    assert start(sagemaker, "b" * 64) != first
    runs = sagemaker.list_pipeline_executions(PipelineName="closedloop-training")["PipelineExecutionSummaries"]
    assert len(runs) == 2
    assert sagemaker.describe_pipeline_execution(PipelineExecutionArn=first)["PipelineExecutionStatus"] == "Executing"


def test_execution_steps_list_newest_first_with_their_metadata(sagemaker: Any) -> None:
    execution = start(sagemaker, "c" * 64)
    assert sagemaker.list_pipeline_execution_steps(PipelineExecutionArn=execution)["PipelineExecutionSteps"] == []
    t0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    for index, name in enumerate(["Train", "Evaluate", "Baseline"]):
        record_execution_step(ACCOUNT, REGION, execution, name=name, started=t0 + timedelta(minutes=index))
    record_execution_step(
        ACCOUNT,
        REGION,
        execution,
        name="Register",
        metadata={"RegisterModel": {"Arn": PACKAGE}},
        started=t0 + timedelta(minutes=9),
    )
    steps = sagemaker.list_pipeline_execution_steps(PipelineExecutionArn=execution)["PipelineExecutionSteps"]
    assert [s["StepName"] for s in steps] == ["Register", "Baseline", "Evaluate", "Train"]
    assert steps[0]["Metadata"] == {"RegisterModel": {"Arn": PACKAGE}}
    assert steps[0]["StepStatus"] == "Succeeded" and "EndTime" in steps[0]
    ascending = sagemaker.list_pipeline_execution_steps(PipelineExecutionArn=execution, SortOrder="Ascending")
    assert ascending["PipelineExecutionSteps"][0]["StepName"] == "Train"
    page = sagemaker.list_pipeline_execution_steps(PipelineExecutionArn=execution, MaxResults=3)
    assert len(page["PipelineExecutionSteps"]) == 3
    rest = sagemaker.list_pipeline_execution_steps(
        PipelineExecutionArn=execution, MaxResults=3, NextToken=page["NextToken"]
    )
    assert [s["StepName"] for s in rest["PipelineExecutionSteps"]] == ["Train"] and "NextToken" not in rest


def test_a_failed_step_carries_its_reason_and_bad_statuses_are_refused(sagemaker: Any) -> None:
    execution = start(sagemaker, "d" * 64)
    record_execution_step(ACCOUNT, REGION, execution, name="Train", status="Failed", failure_reason="AlgorithmError")
    [step] = sagemaker.list_pipeline_execution_steps(PipelineExecutionArn=execution)["PipelineExecutionSteps"]
    assert (step["StepStatus"], step["FailureReason"]) == ("Failed", "AlgorithmError")
    with pytest.raises(ValueError, match="not a pipeline step status"):
        record_execution_step(ACCOUNT, REGION, execution, name="Train", status="Done")


def test_an_unknown_execution_is_a_validation_error(sagemaker: Any) -> None:
    with pytest.raises(ClientError) as raised:
        sagemaker.list_pipeline_execution_steps(
            PipelineExecutionArn=f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/closedloop-training/execution/nope"
        )
    assert raised.value.response["Error"]["Code"] == "ValidationException"
