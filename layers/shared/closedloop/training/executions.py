"""The shared training pipeline's executions, as the routes read them back (an adapter)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from closedloop import lineage
from closedloop.aws import aws_errors

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient


def model_group_of(sagemaker: SageMakerClient, execution_arn: str) -> str:
    """The model group an execution trains: its `ModelPackageGroupName` parameter ("" if unset).

    Every model line shares the pipeline; routes 2 and 6 start it with the line's group, so the
    parameter says whose execution it is.

    Raises:
        AwsServiceError / ThrottledError: the call failed.
    """
    with aws_errors("sagemaker:ListPipelineParametersForExecution"):
        parameters = sagemaker.list_pipeline_parameters_for_execution(
            PipelineExecutionArn=execution_arn, MaxResults=100
        )["PipelineParameters"]
    return next((p["Value"] for p in parameters if p["Name"] == lineage.PARAM_MODEL_GROUP), "")
