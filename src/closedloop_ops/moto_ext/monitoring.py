"""Pipeline executions and conditional writes as drift → retraining relies on them (moto 5.2.x).

* A pipeline execution is `Executing` from StartPipelineExecution until it ends (moto reports it
  `Succeeded` at once, so "is a retraining running?" could never be answered). The local pipeline
  runner, or a test, ends it with `finish_pipeline_execution`.
* StartPipelineExecution is idempotent on `ClientRequestToken`: a repeated start of a pipeline
  with a token it has seen returns the first execution instead of starting another (moto starts
  one per call).
* ListPipelineExecutions honours `SortBy`/`SortOrder` (default: newest first), `CreatedAfter`/
  `CreatedBefore` and `MaxResults`/`NextToken`, and leaves out `PipelineExecutionFailureReason`
  when there is none (moto returns every execution, oldest first, with the text "None").
* DynamoDB writes (PutItem, UpdateItem, DeleteItem, TransactWriteItems; BatchWriteItem goes
  through the first and the third) are atomic with their condition, as on AWS: moto checks a
  condition and writes in two steps, so two threads could both pass the same
  `attribute_not_exists` — which is exactly how a single-flight lock is taken.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.dynamodb.models import DynamoDBBackend
from moto.sagemaker import models as sm_models
from moto.sagemaker.responses import SageMakerResponse
from moto.sagemaker.utils import get_pipeline_from_name

ENDED = frozenset({"Succeeded", "Failed", "Stopped"})
DEFAULT_PAGE = 50
_write_lock = threading.RLock()
_start_lock = threading.RLock()


# -- pipeline executions ------------------------------------------------------------------------

_original_execution_init = sm_models.FakePipelineExecution.__init__
_original_start = sm_models.SageMakerModelBackend.start_pipeline_execution


def _execution_init(self: sm_models.FakePipelineExecution, *args: Any, **kwargs: Any) -> None:
    _original_execution_init(self, *args, **kwargs)
    self.pipeline_execution_status = "Executing"
    self.pipeline_execution_failure_reason = None


def _start_pipeline_execution(
    self: sm_models.SageMakerModelBackend,
    pipeline_name: str,
    pipeline_execution_display_name: str,
    pipeline_parameters: list[dict[str, Any]],
    pipeline_execution_description: str,
    parallelism_configuration: dict[str, int],
    client_request_token: str,
) -> dict[str, str]:
    with _start_lock:
        if client_request_token:
            pipeline = get_pipeline_from_name(self.pipelines, pipeline_name)
            for arn, execution in pipeline.pipeline_executions.items():
                if execution.client_request_token == client_request_token:
                    return {"PipelineExecutionArn": arn}
        result: dict[str, str] = _original_start(
            self,
            pipeline_name,
            pipeline_execution_display_name,
            pipeline_parameters,
            pipeline_execution_description,
            parallelism_configuration,
            client_request_token,
        )
        return result


def _list_pipeline_executions(self: SageMakerResponse) -> ActionResult:
    pipeline = get_pipeline_from_name(self.sagemaker_backend.pipelines, self._get_param("PipelineName"))
    after = _as_time(self._get_param("CreatedAfter"))
    before = _as_time(self._get_param("CreatedBefore"))
    executions = [
        (arn, e)
        for arn, e in pipeline.pipeline_executions.items()
        if (after is None or e.creation_time > after) and (before is None or e.creation_time < before)
    ]
    by = self._get_param("SortBy") or "CreationTime"
    descending = (self._get_param("SortOrder") or "Descending") == "Descending"
    if by == "PipelineExecutionArn":
        executions.sort(key=lambda item: item[0], reverse=descending)
    else:
        executions.sort(key=lambda item: item[1].creation_time, reverse=descending)
    start = int(self._get_param("NextToken") or 0)
    size = int(self._get_param("MaxResults") or DEFAULT_PAGE)
    page = executions[start : start + size]
    summaries = []
    for arn, execution in page:
        summary = {
            "PipelineExecutionArn": arn,
            "StartTime": execution.start_time,
            "PipelineExecutionStatus": execution.pipeline_execution_status,
            "PipelineExecutionDisplayName": execution.pipeline_execution_display_name,
        }
        if execution.pipeline_execution_description:
            summary["PipelineExecutionDescription"] = execution.pipeline_execution_description
        if execution.pipeline_execution_failure_reason:
            summary["PipelineExecutionFailureReason"] = execution.pipeline_execution_failure_reason
        summaries.append(summary)
    response: dict[str, Any] = {"PipelineExecutionSummaries": summaries}
    if start + size < len(executions):
        response["NextToken"] = str(start + size)
    return ActionResult(response)


def _as_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, tz=utcnow().tzinfo)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def finish_pipeline_execution(account: str, region: str, execution_arn: str, status: str, reason: str = "") -> None:
    """End a pipeline execution (`Succeeded`, `Failed` or `Stopped`), as its last step would.

    Raises:
        ValueError: `status` is not an end status.
    """
    if status not in ENDED:
        raise ValueError(f"{status} is not an end status of a pipeline execution")
    backend = sm_models.sagemaker_backends[account][region]
    pipeline_name = execution_arn.split(":pipeline/", 1)[1].split("/", 1)[0]
    execution = backend.pipelines[pipeline_name].pipeline_executions[execution_arn]
    execution.pipeline_execution_status = status
    execution.last_modified_time = utcnow()
    if reason:
        execution.pipeline_execution_failure_reason = reason  # type: ignore[assignment]


# -- atomic conditional writes ------------------------------------------------------------------


def _atomic(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with _write_lock:
            return method(*args, **kwargs)

    locked.__closedloop_atomic__ = True  # type: ignore[attr-defined]
    return locked


def install() -> None:
    sm_models.FakePipelineExecution.__init__ = _execution_init  # type: ignore[method-assign]
    sm_models.SageMakerModelBackend.start_pipeline_execution = _start_pipeline_execution  # type: ignore[method-assign]
    SageMakerResponse.list_pipeline_executions = _list_pipeline_executions  # type: ignore[method-assign]
    for name in ("put_item", "update_item", "delete_item", "transact_write_items"):
        method = getattr(DynamoDBBackend, name)
        if not getattr(method, "__closedloop_atomic__", False):
            setattr(DynamoDBBackend, name, _atomic(method))
