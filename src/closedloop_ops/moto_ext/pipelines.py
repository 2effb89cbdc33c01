"""Pipeline execution steps, as the approval gate reads them (moto 5.2.x has no ListPipelineExecutionSteps).

* `ListPipelineExecutionSteps` returns the steps recorded for an execution — newest first by
  default (`SortOrder`), paged by `MaxResults`/`NextToken` — each with AWS's fields (`StepName`,
  `StepStatus`, `StartTime`, `EndTime`, `AttemptCount`, `Metadata`, e.g. `RegisterModel.Arn`).
  An unknown execution is a ValidationException, as on AWS. (moto raises NotImplementedError.)
* `record_execution_step` is how whoever plays SageMaker — the local pipeline runner, or a test —
  records a step it ran: moto runs no steps itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.sagemaker import models as sm_models
from moto.sagemaker.responses import SageMakerResponse
from moto.sagemaker.utils import get_pipeline_execution_from_arn

DEFAULT_PAGE = 50
STEP_STATUSES = frozenset({"Starting", "Executing", "Stopping", "Stopped", "Failed", "Succeeded"})


def _steps(execution: sm_models.FakePipelineExecution) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] | None = getattr(execution, "closedloop_steps", None)
    if steps is None:
        steps = []
        execution.closedloop_steps = steps  # type: ignore[attr-defined]
    return steps


def record_execution_step(
    account: str,
    region: str,
    execution_arn: str,
    *,
    name: str,
    status: str = "Succeeded",
    metadata: dict[str, Any] | None = None,
    failure_reason: str = "",
    started: datetime | None = None,
    ended: datetime | None = None,
) -> dict[str, Any]:
    """Record a step of an execution (as SageMaker would after running it); returns the step.

    Raises:
        ValueError: `status` is not a step status.
        moto ValidationError: no such execution.
    """
    if status not in STEP_STATUSES:
        raise ValueError(f"{status} is not a pipeline step status")
    backend = sm_models.sagemaker_backends[account][region]
    execution = get_pipeline_execution_from_arn(backend.pipelines, execution_arn)
    now = utcnow()
    step: dict[str, Any] = {
        "StepName": name,
        "StepDisplayName": name,
        "StartTime": started or now,
        "StepStatus": status,
        "AttemptCount": 1,
        "Metadata": metadata or {},
    }
    if status in {"Succeeded", "Failed", "Stopped"}:
        step["EndTime"] = ended or now
    if failure_reason:
        step["FailureReason"] = failure_reason
    _steps(execution).append(step)
    return step


def _list_pipeline_execution_steps(self: SageMakerResponse) -> ActionResult:
    execution = get_pipeline_execution_from_arn(
        self.sagemaker_backend.pipelines, self._get_param("PipelineExecutionArn")
    )
    descending = (self._get_param("SortOrder") or "Descending") == "Descending"
    ordered = sorted(enumerate(_steps(execution)), key=lambda item: (item[1]["StartTime"], item[0]), reverse=descending)
    start = int(self._get_param("NextToken") or 0)
    size = int(self._get_param("MaxResults") or DEFAULT_PAGE)
    page = [step for _, step in ordered[start : start + size]]
    response: dict[str, Any] = {"PipelineExecutionSteps": page}
    if start + size < len(ordered):
        response["NextToken"] = str(start + size)
    return ActionResult(response)


def install() -> None:
    SageMakerResponse.list_pipeline_execution_steps = _list_pipeline_execution_steps  # type: ignore[attr-defined]
