"""Adapter over the shared training pipeline's executions: start one, find a line's running one,
read an ended one back.

Routes 2 and 6 start executions (`requests.build_start_pipeline_request`); route 6 looks for the
running execution of its line's group; route 3 reads an ended one back: whose it is
(`executions.model_group_of`), why it failed, which model version it registered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from pydantic import ConfigDict

from closedloop.aws import aws_errors, error_code, is_not_found
from closedloop.errors import AwsServiceError
from closedloop.model import Model
from closedloop.training.executions import model_group_of

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

RUNNING_STATUSES = frozenset({"Executing", "Stopping"})
EXECUTIONS_PAGE_SIZE = 100
EXECUTIONS_SCANNED = 1000
STEPS_PAGE_SIZE = 100


class RunningExecution(Model):
    """An execution of the pipeline that has not ended yet."""

    model_config = ConfigDict(frozen=True)

    arn: str
    status: str
    display_name: str = ""


class TrainingPipeline:
    """Starts and reads back executions of the training pipeline every model line shares."""

    def __init__(self, sagemaker: SageMakerClient) -> None:
        self._sagemaker = sagemaker

    def start(self, request: Mapping[str, Any]) -> str:
        """Start an execution (a `build_start_pipeline_request` payload); returns its ARN.

        A request with the `ClientRequestToken` of an execution already started returns that one.

        Raises:
            AwsServiceError / ThrottledError / ResourceLimitError: it could not be started.
        """
        with aws_errors("sagemaker:StartPipelineExecution"):
            response = self._sagemaker.start_pipeline_execution(**request)
        return response["PipelineExecutionArn"]

    def running_execution(self, pipeline_name: str, model_group: str) -> RunningExecution | None:
        """The newest still-running execution of the pipeline for this model group, if any.

        The pipeline is shared by every model line; an execution trains the group its
        `ModelPackageGroupName` parameter names, and only the group's own execution is returned.

        Raises:
            AwsServiceError: the pipeline does not exist (not retryable), or a call failed.
        """
        paginator = self._sagemaker.get_paginator("list_pipeline_executions")
        try:
            with aws_errors("sagemaker:ListPipelineExecutions", passthrough=is_not_found):
                pages = paginator.paginate(
                    PipelineName=pipeline_name,
                    SortBy="CreationTime",
                    SortOrder="Descending",
                    PaginationConfig={"MaxItems": EXECUTIONS_SCANNED, "PageSize": EXECUTIONS_PAGE_SIZE},
                )
                running = [
                    RunningExecution(
                        arn=str(summary["PipelineExecutionArn"]),
                        status=str(summary.get("PipelineExecutionStatus")),
                        display_name=str(summary.get("PipelineExecutionDisplayName") or ""),
                    )
                    for page in pages
                    for summary in page.get("PipelineExecutionSummaries", [])
                    if summary.get("PipelineExecutionStatus") in RUNNING_STATUSES
                ]
        except ClientError:
            raise AwsServiceError(
                f"pipeline {pipeline_name} does not exist: deploy the training pipeline first",
                retryable=False,
                operation="sagemaker:ListPipelineExecutions",
            ) from None
        return next((e for e in running if self.model_group_of(e.arn) == model_group), None)

    def model_group_of(self, execution_arn: str) -> str:
        """The model group an execution trains ("" if unset); see `executions.model_group_of`."""
        return model_group_of(self._sagemaker, execution_arn)

    def failure_reason(self, execution_arn: str) -> str | None:
        """Why an execution failed, as SageMaker says it ("" when it says nothing); None when it is gone.

        Raises:
            AwsServiceError / ThrottledError: SageMaker could not be read.
        """
        try:
            with aws_errors("sagemaker:DescribePipelineExecution", passthrough=is_not_found):
                described = self._sagemaker.describe_pipeline_execution(PipelineExecutionArn=execution_arn)
        except ClientError:
            return None
        return str(described.get("FailureReason") or "")

    def registered_package(self, execution_arn: str) -> str | None:
        """The model package ARN the execution's RegisterModel step registered, by its step list.

        None when no RegisterModel step succeeded, or the step list cannot be had (the execution is
        gone, or the API is not there): the caller looks another way.

        Raises:
            AwsServiceError / ThrottledError: SageMaker could not be read.
        """
        token: str | None = None
        while True:
            request: dict[str, Any] = {"PipelineExecutionArn": execution_arn, "MaxResults": STEPS_PAGE_SIZE}
            if token:
                request["NextToken"] = token
            try:
                with aws_errors("sagemaker:ListPipelineExecutionSteps", passthrough=_steps_unavailable):
                    page = self._sagemaker.list_pipeline_execution_steps(**request)
            except ClientError:
                return None
            for step in page.get("PipelineExecutionSteps", []):
                registered = step.get("Metadata", {}).get("RegisterModel", {}).get("Arn")
                if registered and step.get("StepStatus") == "Succeeded":
                    return str(registered)
            token = page.get("NextToken")
            if not token:
                return None


def _steps_unavailable(exc: ClientError) -> bool:
    """The step list cannot be had (execution gone, API not there)."""
    return is_not_found(exc) or error_code(exc) in {"UnknownOperationException", "NotImplemented", "InvalidAction"}
