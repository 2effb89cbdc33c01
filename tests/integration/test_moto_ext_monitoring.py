"""Pins closedloop_ops.moto_ext.monitoring: pipeline executions and conditional writes as on AWS."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta

import boto3
import pytest
from botocore.exceptions import ClientError

from closedloop_ops import moto_ext
from closedloop_ops.moto_ext.monitoring import finish_pipeline_execution
from support.stack import ACCOUNT, REGION

PIPELINE = "closedloop-training"


@pytest.fixture
def sagemaker() -> Iterator[object]:
    from moto import mock_aws

    moto_ext.install()
    with mock_aws():
        sm = boto3.client("sagemaker", region_name=REGION)
        sm.create_pipeline(
            PipelineName=PIPELINE,
            PipelineDefinition=json.dumps({"Version": "2020-12-01", "Parameters": [], "Steps": []}),
            RoleArn=f"arn:aws:iam::{ACCOUNT}:role/pipeline",
        )
        yield sm


def start(sm: object, token: str, name: str = "run") -> str:
    return sm.start_pipeline_execution(  # type: ignore[attr-defined,no-any-return]
        PipelineName=PIPELINE, PipelineExecutionDisplayName=name, ClientRequestToken=token
    )["PipelineExecutionArn"]


def test_an_execution_runs_until_it_is_ended(sagemaker: object) -> None:
    arn = start(sagemaker, "a" * 32)
    described = sagemaker.describe_pipeline_execution(PipelineExecutionArn=arn)  # type: ignore[attr-defined]
    assert described["PipelineExecutionStatus"] == "Executing"
    finish_pipeline_execution(ACCOUNT, REGION, arn, "Failed", reason="step Train failed")
    [summary] = sagemaker.list_pipeline_executions(PipelineName=PIPELINE)["PipelineExecutionSummaries"]  # type: ignore[attr-defined]
    assert (summary["PipelineExecutionStatus"], summary["PipelineExecutionFailureReason"]) == (
        "Failed",
        "step Train failed",
    )
    with pytest.raises(ValueError, match="end status"):
        finish_pipeline_execution(ACCOUNT, REGION, arn, "Executing")


def test_a_start_with_a_known_token_returns_the_first_execution(sagemaker: object) -> None:
    first = start(sagemaker, "b" * 32)
    assert start(sagemaker, "b" * 32) == first
    assert start(sagemaker, "c" * 32) != first
    assert len(sagemaker.list_pipeline_executions(PipelineName=PIPELINE)["PipelineExecutionSummaries"]) == 2  # type: ignore[attr-defined]


def test_executions_are_listed_newest_first_in_pages_without_a_fake_failure_reason(sagemaker: object) -> None:
    from moto.sagemaker.models import sagemaker_backends

    arns = [start(sagemaker, f"{i:032d}", name=f"run-{i}") for i in range(5)]
    executions = sagemaker_backends[ACCOUNT][REGION].pipelines[PIPELINE].pipeline_executions
    for offset, arn in enumerate(arns):  # distinct creation times, one minute apart
        executions[arn].creation_time = executions[arn].creation_time + timedelta(minutes=offset)
    listed = sagemaker.list_pipeline_executions(PipelineName=PIPELINE)["PipelineExecutionSummaries"]  # type: ignore[attr-defined]
    assert [s["PipelineExecutionArn"] for s in listed] == arns[::-1]
    assert all("PipelineExecutionFailureReason" not in s for s in listed)
    ascending = sagemaker.list_pipeline_executions(PipelineName=PIPELINE, SortOrder="Ascending")  # type: ignore[attr-defined]
    assert [s["PipelineExecutionArn"] for s in ascending["PipelineExecutionSummaries"]] == arns
    pages = sagemaker.get_paginator("list_pipeline_executions").paginate(  # type: ignore[attr-defined]
        PipelineName=PIPELINE, PaginationConfig={"PageSize": 2}
    )
    sizes = [len(page["PipelineExecutionSummaries"]) for page in pages]
    assert sizes == [2, 2, 1]
    newer = sagemaker.list_pipeline_executions(  # type: ignore[attr-defined]
        PipelineName=PIPELINE, CreatedAfter=executions[arns[2]].creation_time
    )["PipelineExecutionSummaries"]
    assert [s["PipelineExecutionArn"] for s in newer] == arns[:2:-1]


def test_a_conditional_put_has_exactly_one_winner_among_threads() -> None:
    from moto import mock_aws

    moto_ext.install()
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        ddb.create_table(
            TableName="locks",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        )
        winners: list[int] = []
        barrier = threading.Barrier(30)

        def take(i: int) -> None:
            barrier.wait()
            try:
                ddb.put_item(
                    TableName="locks",
                    Item={"pk": {"S": "lock"}, "holder": {"S": str(i)}},
                    ConditionExpression="attribute_not_exists(pk)",
                )
                winners.append(i)
            except ClientError as exc:
                assert exc.response["Error"]["Code"] == "ConditionalCheckFailedException"

        threads = [threading.Thread(target=take, args=(i,)) for i in range(30)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(winners) == 1
        item = ddb.get_item(TableName="locks", Key={"pk": {"S": "lock"}})["Item"]
        assert item["holder"]["S"] == str(winners[0])
