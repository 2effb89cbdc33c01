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
        Trigger(alarm_name="closedloop-loans-drift-features", state_timestamp=None),
        Trigger(alarm_name=None, state_timestamp="2026-11-27T10:02:11.322+0000"),
    ],
    ids=["no key at all", "half a key", "the other half"],
)
def test_once_refuses_a_call_without_its_key_before_anything_runs(trigger: Trigger) -> None:
    # Given a side effect guarded by the alarm's business key (alarm name + state time)
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
    # When it is called with a trigger that lacks the whole key or a part of it
    # Then it is an invalid event (no retry can help: it goes to the DLQ): half a key would guard
    # every alarm state of that name with one record, so a later, different alarm state would be
    # taken for a duplicate of this one
    with pytest.raises(InvalidEventError, match="idempotency key"):
        guarded(trigger=trigger)
    # And the guarded function never ran, and the store was never written
    assert (calls, store.writes) == ([], 0)


def test_once_runs_a_call_with_its_whole_key_once() -> None:
    # Given the same guard
    calls: list[Trigger] = []
    store = MemoryStore()

    def side_effect(trigger: Trigger) -> Outcome:
        calls.append(trigger)
        return Outcome(result=f"started {len(calls)}")

    guarded = Once(
        side_effect,
        key="[alarm_name, state_timestamp]",
        data_argument="trigger",
        output=Outcome,
        store=store,
        ttl_seconds=3600,
        key_prefix="alarm.start_retraining",
    )
    whole = Trigger(alarm_name="closedloop-loans-drift-features", state_timestamp="2026-11-27T10:02:11.322+0000")
    later = Trigger(alarm_name="closedloop-loans-drift-features", state_timestamp="2026-11-27T11:02:11.322+0000")
    # When the same key comes twice, and another state time of the same alarm once
    first, again, other = guarded(trigger=whole), guarded(trigger=whole), guarded(trigger=later)
    # Then the function ran once per key, and the duplicate got the first call's result
    assert (first.result, again.result, other.result) == ("started 1", "started 1", "started 2")
    assert calls == [whole, later]


def _without(sample: str, *path: str) -> dict[str, Any]:
    event = copy.deepcopy(load_event(sample))
    node = event
    for part in path[:-1]:
        node = node[part]
    node.pop(path[-1])
    return event


def _upload_without(*fields: str) -> dict[str, Any]:
    """The route-1 sample's SQS body with only `fields` of its object removed."""
    body: dict[str, Any] = json.loads(load_event("start_data_prep_sqs")["Records"][0]["body"])
    for name in fields:
        body["detail"]["object"].pop(name)
    return body


# case → (parse the keyless event, the documented error, where the error must say the key is missing)
KEYLESS: list[tuple[str, Callable[[], Any], type[Exception], tuple[str, ...]]] = [
    (
        "uploads: no object key",
        lambda: ObjectCreatedEvent.model_validate(_upload_without("key")),
        ValidationError,
        ("detail.object.key",),
    ),
    (
        "uploads: neither version id nor etag",
        lambda: ObjectCreatedEvent.model_validate(_upload_without("version-id", "etag")),
        ValidationError,
        ("detail.object.etag", "detail.object.version-id"),
    ),
    (
        "processing job end: no job name",
        lambda: parse_prep_job_event(_without("processing_job_state_change", "detail", "ProcessingJobName")),
        InvalidEventError,
        ("detail.ProcessingJobName",),
    ),
    (
        "glue job end: no run id",
        lambda: parse_prep_job_event(_without("glue_job_state_change", "detail", "jobRunId")),
        InvalidEventError,
        ("detail.jobRunId",),
    ),
    (
        "pipeline end: no execution ARN",
        lambda: parse_pipeline_execution_event(
            _without("pipeline_execution_status_change", "detail", "pipelineExecutionArn")
        ),
        InvalidEventError,
        ("detail.pipelineExecutionArn",),
    ),
    (
        "pipeline end: no status",
        lambda: parse_pipeline_execution_event(
            _without("pipeline_execution_status_change", "detail", "currentPipelineExecutionStatus")
        ),
        InvalidEventError,
        ("detail.currentPipelineExecutionStatus",),
    ),
    (
        "approval: no package ARN",
        lambda: ModelPackageStateChangeEvent.model_validate(
            _without("model_package_approved", "detail", "ModelPackageArn")
        ),
        ValidationError,
        ("detail.ModelPackageArn",),
    ),
    (
        "approval: no status",
        lambda: ModelPackageStateChangeEvent.model_validate(
            _without("model_package_approved", "detail", "ModelApprovalStatus")
        ),
        ValidationError,
        ("detail.ModelApprovalStatus",),
    ),
    (
        "endpoint: no endpoint name",
        lambda: ENDPOINT_EVENT.validate_python(_without("endpoint_state_change", "detail", "EndpointName")),
        ValidationError,
        ("detail.EndpointName",),
    ),
    (
        "alarm: no alarm name",
        lambda: parse_alarm_event(_without("alarm_state_change", "detail", "alarmName")),
        InvalidEventError,
        ("detail.alarmName",),
    ),
    (
        "alarm: no state time",
        lambda: parse_alarm_event(_without("alarm_state_change", "detail", "state", "timestamp")),
        InvalidEventError,
        ("detail.state.timestamp",),
    ),
    (
        "schedule: no execution id",
        lambda: parse_drift_run(_without("drift_monitor_schedule", "execution_id")),
        InvalidEventError,
        ("execution_id",),
    ),
]


def _where(error: Exception) -> list[str]:
    """Where the model says the event does not fit (dotted paths, by the event's own field names)."""
    if isinstance(error, ValidationError):
        return [".".join(map(str, e["loc"])) for e in error.errors(include_url=False)]
    assert isinstance(error, InvalidEventError)
    return [str(p["at"]) for p in error.context.get("problems", [])]


@pytest.mark.parametrize(("case", "parse", "error", "missing"), KEYLESS, ids=[case for case, *_ in KEYLESS])
def test_an_event_without_the_fields_of_its_key_is_refused_by_its_model(
    case: str, parse: Callable[[], Any], error: type[Exception], missing: tuple[str, ...]
) -> None:
    # Given the route's sample with (only) the fields of its business key removed
    # When its model parses it, Then it is refused with the route's documented error
    with pytest.raises(error) as refused:
        parse()
    assert type(refused.value) is error
    # And the refusal is about the missing key field, not about something else in the event
    # (a discriminated union prefixes the event kind: "Glue Job State Change.detail.jobRunId")
    where = _where(refused.value)
    assert any(place == path or place.endswith(f".{path}") for place in where for path in missing), (case, where)
