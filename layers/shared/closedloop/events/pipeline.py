"""`aws.sagemaker` / `SageMaker Model Building Pipeline Execution Status Change`, as route 3 receives it.

What AWS sends: the pipeline and execution ARNs (also in `resources`), the execution's display
name and description, the current and previous status, and start/end times — ISO strings in the
published samples; epoch milliseconds are accepted too (other SageMaker events use them). Route 3
is for terminal statuses only (Succeeded, Failed, Stopped); Executing and Stopping are rejected,
as is the look-alike `…Execution Step Status Change`.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from closedloop.errors import InvalidEventError
from closedloop.events.base import EventBridgeModel, single_source, validation_problems
from closedloop.model import Model

TerminalStatus = Literal["Succeeded", "Failed", "Stopped"]
EXECUTION_ARN = re.compile(r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:pipeline/([^/]+)/execution/([a-z0-9]+)$")


class PipelineExecutionStatusChangeDetail(Model):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    pipeline_arn: str = Field(alias="pipelineArn", pattern=r"^arn:aws[a-z-]*:sagemaker:[^:]+:\d{12}:pipeline/[^/]+$")
    execution_arn: str = Field(alias="pipelineExecutionArn", pattern=EXECUTION_ARN.pattern)
    display_name: str | None = Field(default=None, alias="pipelineExecutionDisplayName")
    description: str | None = Field(default=None, alias="pipelineExecutionDescription")
    status: TerminalStatus = Field(alias="currentPipelineExecutionStatus")
    previous_status: str | None = Field(default=None, alias="previousPipelineExecutionStatus")
    started_at: datetime | None = Field(default=None, alias="executionStartTime")
    ended_at: datetime | None = Field(default=None, alias="executionEndTime")
    failure_reason: str | None = Field(default=None, alias="failureReason")

    @model_validator(mode="after")
    def _execution_of_this_pipeline(self) -> PipelineExecutionStatusChangeDetail:
        if not self.execution_arn.lower().startswith(self.pipeline_arn.lower() + "/execution/"):
            raise ValueError("the execution ARN is not an execution of the pipeline ARN")
        return self

    @property
    def pipeline_name(self) -> str:
        return self.pipeline_arn.rsplit("/", 1)[1]


class PipelineExecutionStatusChangeEvent(EventBridgeModel):
    source: Annotated[Literal["aws.sagemaker"], BeforeValidator(single_source)]  # type: ignore[assignment]
    detail_type: Literal["SageMaker Model Building Pipeline Execution Status Change"] = Field(  # type: ignore[assignment]
        alias="detail-type"
    )
    detail: PipelineExecutionStatusChangeDetail


def parse_pipeline_execution_event(event: Any) -> PipelineExecutionStatusChangeEvent:
    """Parse a pipeline execution's terminal status change.

    Raises:
        InvalidEventError: another event, a non-terminal status, or a malformed detail (bad ARNs,
            an execution of another pipeline than the one named); `problems` lists what did not fit.
    """
    try:
        return PipelineExecutionStatusChangeEvent.model_validate(event)
    except ValidationError as exc:
        raise InvalidEventError(
            "not a terminal SageMaker pipeline execution status change", problems=validation_problems(exc)
        ) from None
