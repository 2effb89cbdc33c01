"""An event without its idempotency key is an error that goes to a DLQ — it never runs unprotected.

Two layers stand in the way: each route's model refuses an event that lacks the fields its business
key is made of (the parser's documented error: `InvalidEventError`, or pydantic's `ValidationError`
for the SQS-fed routes, whose records then end in their DLQ); and `closedloop.idempotency.Once`
(`raise_on_no_idempotency_key=True`) refuses a call whose key evaluates to nothing, before the
store is written and before the guarded function runs.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer, DataRecord
from pydantic import BaseModel, ValidationError

from closedloop.errors import InvalidEventError
from closedloop.events.cloudwatch import parse_alarm_event
from closedloop.events.endpoint import ENDPOINT_EVENT
from closedloop.events.jobs import parse_prep_job_event
from closedloop.events.pipeline import parse_pipeline_execution_event
from closedloop.events.registry import ModelPackageStateChangeEvent
from closedloop.events.s3 import ObjectCreatedEvent
from closedloop.events.scheduler import parse_drift_run
from closedloop.idempotency import Once
from support.events import load_event


class MemoryStore(BasePersistenceLayer):
    """An idempotency store in a dict, counting every write."""

    def __init__(self) -> None:
        super().__init__()
        self.records: dict[str, DataRecord] = {}
        self.writes = 0

    def _get_record(self, idempotency_key: str) -> DataRecord:
        if idempotency_key not in self.records:
            raise IdempotencyItemNotFoundError
        return self.records[idempotency_key]

    def _put_record(self, data_record: DataRecord) -> None:
        existing = self.records.get(data_record.idempotency_key)
        if existing is not None and not existing.is_expired:  # DynamoDB's conditional put
            raise IdempotencyItemAlreadyExistsError(old_data_record=existing)
        self.writes += 1
        self.records[data_record.idempotency_key] = data_record

    def _update_record(self, data_record: DataRecord) -> None:
        self.writes += 1
        self.records[data_record.idempotency_key] = data_record

    def _delete_record(self, data_record: DataRecord) -> None:
        self.writes += 1
        self.records.pop(data_record.idempotency_key, None)


class Trigger(BaseModel):
    alarm_name: str | None
    state_timestamp: str | None


class Outcome(BaseModel):
    result: str


@pytest.mark.parametrize(
    "trigger",
    [
        Trigger(alarm_name=None, state_timestamp=None),
        Trigger(alarm_name="closedloop-drift-features", state_timestamp=None),
    ],
    ids=["no key at all", "half a key"],
)
def test_once_refuses_a_call_without_its_key_before_anything_runs(trigger: Trigger) -> None:
    calls: list[Trigger] = []
    store = MemoryStore()

    def side_effect(trigger: Trigger) -> Outcome:
        calls.append(trigger)
        return Outcome(result="started")

    guarded = Once(
        side_effect,
        key="[alarm_name, state_timestamp]",
        data_argument="trigger",
        output=Outcome,
        store=store,
        ttl_seconds=3600,
        key_prefix="alarm.start_retraining",
    )
    if trigger.alarm_name is None:
        # Then an invalid event (no retry can help: it goes to the DLQ), the function never ran
        with pytest.raises(InvalidEventError, match="no idempotency key"):
            guarded(trigger=trigger)
        assert (calls, store.writes) == ([], 0)
    else:
        # A partial key is still a key (JMESPath yields [name, null]); it is guarded like any other
        assert guarded(trigger=trigger).result == "started"
        assert guarded(trigger=trigger).result == "started"
        assert len(calls) == 1


def _without(sample: str, *path: str) -> dict[str, Any]:
    event = copy.deepcopy(load_event(sample))
    node = event
    for part in path[:-1]:
        node = node[part]
    node.pop(path[-1])
    return event


def _sqs_body(sample: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(load_event(sample)["Records"][0]["body"])
    return body


KEYLESS: list[tuple[str, Callable[[], Any], type[Exception]]] = [
    (
        "uploads: no object key",
        lambda: ObjectCreatedEvent.model_validate(
            {**(e := _sqs_body("start_data_prep_sqs")), "detail": {**e["detail"], "object": {"size": 1, "etag": "x"}}}
        ),
        ValidationError,
    ),
    (
        "uploads: neither version id nor etag",
        lambda: ObjectCreatedEvent.model_validate(
            {
                **(e := _sqs_body("start_data_prep_sqs")),
                "detail": {**e["detail"], "object": {"key": "raw/loans/a.csv", "size": 1}},
            }
        ),
        ValidationError,
    ),
    (
        "processing job end: no job name",
        lambda: parse_prep_job_event(_without("processing_job_state_change", "detail", "ProcessingJobName")),
        InvalidEventError,
    ),
    (
        "glue job end: no run id",
        lambda: parse_prep_job_event(_without("glue_job_state_change", "detail", "jobRunId")),
        InvalidEventError,
    ),
    (
        "pipeline end: no execution ARN",
        lambda: parse_pipeline_execution_event(
            _without("pipeline_execution_status_change", "detail", "pipelineExecutionArn")
        ),
        InvalidEventError,
    ),
    (
        "pipeline end: no status",
        lambda: parse_pipeline_execution_event(
            _without("pipeline_execution_status_change", "detail", "currentPipelineExecutionStatus")
        ),
        InvalidEventError,
    ),
    (
        "approval: no package ARN",
        lambda: ModelPackageStateChangeEvent.model_validate(
            _without("model_package_approved", "detail", "ModelPackageArn")
        ),
        ValidationError,
    ),
    (
        "approval: no status",
        lambda: ModelPackageStateChangeEvent.model_validate(
            _without("model_package_approved", "detail", "ModelApprovalStatus")
        ),
        ValidationError,
    ),
    (
        "endpoint: no endpoint name",
        lambda: ENDPOINT_EVENT.validate_python(_without("endpoint_state_change", "detail", "EndpointName")),
        ValidationError,
    ),
    (
        "alarm: no alarm name",
        lambda: parse_alarm_event(_without("alarm_state_change", "detail", "alarmName")),
        InvalidEventError,
    ),
    (
        "alarm: no state time",
        lambda: parse_alarm_event(_without("alarm_state_change", "detail", "state", "timestamp")),
        InvalidEventError,
    ),
    (
        "schedule: no execution id",
        lambda: parse_drift_run(_without("drift_monitor_schedule", "execution_id")),
        InvalidEventError,
    ),
]


@pytest.mark.parametrize(("case", "parse", "error"), KEYLESS, ids=[case for case, _, _ in KEYLESS])
def test_an_event_without_the_fields_of_its_key_is_refused_by_its_model(
    case: str, parse: Callable[[], Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        parse()
