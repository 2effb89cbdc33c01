"""The end of a data-preparation run, as route 2 receives it: Glue or SageMaker Processing.

* `aws.glue` / `Glue Job State Change`: `jobName`, `jobRunId`, `state` (SUCCEEDED, FAILED,
  TIMEOUT, STOPPED — the only states this detail-type carries) and a `message`. The run's
  arguments (which preparation run it was) are not in the event: GetJobRun has them.
* `aws.sagemaker` / `SageMaker Processing Job State Change`: the job's description at that moment
  (`ProcessingJobName`, `ProcessingJobStatus`, `FailureReason`, `AppSpecification` with the
  container arguments, timestamps). Timestamps are epoch milliseconds in the published sample and
  may be ISO strings: both parse to an aware datetime.

Route 2 is only for terminal states; a non-terminal state (the rule never sends one) is rejected,
as are the look-alikes `Glue Job Run Status` and `SageMaker Training Job State Change`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

from closedloop.errors import InvalidEventError
from closedloop.events.base import EventBridgeModel, single_source, validation_problems
from closedloop.model import Model

GlueTerminalState = Literal["SUCCEEDED", "FAILED", "TIMEOUT", "STOPPED"]
ProcessingTerminalStatus = Literal["Completed", "Failed", "Stopped"]


class GlueJobStateChangeDetail(Model):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    job_name: str = Field(alias="jobName", min_length=1, max_length=255)
    job_run_id: str = Field(alias="jobRunId", min_length=1, max_length=255)
    state: GlueTerminalState
    severity: str | None = None
    message: str = ""


class GlueJobStateChangeEvent(EventBridgeModel):
    source: Annotated[Literal["aws.glue"], BeforeValidator(single_source)]  # type: ignore[assignment]
    detail_type: Literal["Glue Job State Change"] = Field(alias="detail-type")  # type: ignore[assignment]
    detail: GlueJobStateChangeDetail


class ProcessingAppSpecification(Model):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    image_uri: str | None = Field(default=None, alias="ImageUri")
    container_entrypoint: list[str] = Field(default_factory=list, alias="ContainerEntrypoint")
    container_arguments: list[str] = Field(default_factory=list, alias="ContainerArguments")


class ProcessingJobStateChangeDetail(Model):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    job_name: str = Field(alias="ProcessingJobName", min_length=1, max_length=63)
    job_arn: str | None = Field(default=None, alias="ProcessingJobArn")
    status: ProcessingTerminalStatus = Field(alias="ProcessingJobStatus")
    failure_reason: str | None = Field(default=None, alias="FailureReason")
    exit_message: str | None = Field(default=None, alias="ExitMessage")
    app_specification: ProcessingAppSpecification | None = Field(default=None, alias="AppSpecification")
    created_at: datetime | None = Field(default=None, alias="CreationTime")
    ended_at: datetime | None = Field(default=None, alias="ProcessingEndTime")
    tags: dict[str, str] | list[dict[str, str]] | None = Field(default=None, alias="Tags")


class ProcessingJobStateChangeEvent(EventBridgeModel):
    source: Annotated[Literal["aws.sagemaker"], BeforeValidator(single_source)]  # type: ignore[assignment]
    detail_type: Literal["SageMaker Processing Job State Change"] = Field(alias="detail-type")  # type: ignore[assignment]
    detail: ProcessingJobStateChangeDetail


PrepJobEvent = Annotated[GlueJobStateChangeEvent | ProcessingJobStateChangeEvent, Field(discriminator="detail_type")]
# built on the first parse (defer_build), like the models: not at import
_PREP_JOB_EVENT: TypeAdapter[GlueJobStateChangeEvent | ProcessingJobStateChangeEvent] = TypeAdapter(
    PrepJobEvent, config=ConfigDict(defer_build=True)
)


def parse_prep_job_event(event: Any) -> GlueJobStateChangeEvent | ProcessingJobStateChangeEvent:
    """Parse the end of a preparation run (Glue job run or Processing job), by its `detail-type`.

    Raises:
        InvalidEventError: not one of the two, a non-terminal state, or a malformed detail;
            `problems` lists what did not fit (never the values).
    """
    try:
        return _PREP_JOB_EVENT.validate_python(event)
    except ValidationError as exc:
        raise InvalidEventError(
            "not the terminal state change of a Glue job run or Processing job",
            problems=validation_problems(exc),
        ) from None
