"""Fuzzing the parsers: every route's real-format sample, mutated, parses or is refused with the documented error.

The documented error is the one that sends the event to its DLQ: `InvalidEventError` for the
EventBridge routes (raised, so Lambda's on-failure destination keeps it), pydantic's
`ValidationError` for the SQS-fed routes (a batch item failure, or the approval queue's DLQ).
Anything else — a TypeError, a KeyError, an OverflowError — would be a crash without a reason.
An event that parses must also give the derived values the routes use (keys, identities, the
trigger summary) without raising. The handler-level fuzz with side effects is in
`tests/integration/test_fuzz_handlers.py`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from closedloop.dataprep.arrival import raw_object_from_event
from closedloop.errors import InvalidEventError
from closedloop.events.cloudwatch import parse_alarm_event
from closedloop.events.endpoint import ENDPOINT_EVENT, EndpointDeploymentStateChangeEvent, api_status
from closedloop.events.jobs import ProcessingJobStateChangeEvent, parse_prep_job_event
from closedloop.events.pipeline import parse_pipeline_execution_event
from closedloop.events.registry import ModelPackageStateChangeEvent
from closedloop.events.s3 import ObjectCreatedEvent
from closedloop.events.scheduler import parse_drift_run
from closedloop.retrain.service import AlarmTrigger
from closedloop.training.prepared import run_arguments
from support.events import load_event
from support.mutations import instants, mutated, render_time

EXAMPLES = 200
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


def _upload(body: Any) -> None:
    parsed = ObjectCreatedEvent.model_validate_json(json.dumps(body))
    obj = raw_object_from_event(parsed, data_bucket="closedloop-dev-databucket-1x2y3z4w5v6u", raw_prefix="raw/")
    getattr(obj, "identity", None)


def _prep_job(event: Any) -> None:
    parsed = parse_prep_job_event(event)
    if isinstance(parsed, ProcessingJobStateChangeEvent) and parsed.detail.app_specification is not None:
        run_arguments(parsed.detail.app_specification.container_arguments)


def _pipeline(event: Any) -> None:
    parsed = parse_pipeline_execution_event(event)
    assert parsed.detail.pipeline_name


def _approval(body: Any) -> None:
    parsed = ModelPackageStateChangeEvent.model_validate_json(json.dumps(body))
    assert isinstance(parsed.detail.status_changed, bool)


def _endpoint(event: Any) -> None:
    parsed = ENDPOINT_EVENT.validate_python(event)
    api_status(parsed.detail.status)
    if isinstance(parsed, EndpointDeploymentStateChangeEvent) and parsed.detail.pending is not None:
        assert parsed.detail.pending.endpoint_config


def _alarm(event: Any) -> None:
    trigger = AlarmTrigger.from_event(parse_alarm_event(event))
    assert trigger.business_key.startswith("alarm:")


def _schedule(event: Any) -> None:
    assert parse_drift_run(event).attempt >= 1


def _sqs_body(name: str) -> Any:
    return json.loads(load_event(name)["Records"][0]["body"])


# route → (sample, parser, the documented errors)
ROUTES: dict[str, tuple[Callable[[], Any], Callable[[Any], None], tuple[type[Exception], ...]]] = {
    "1 upload (SQS body)": (
        lambda: _sqs_body("start_data_prep_sqs"),
        _upload,
        (ValidationError, InvalidEventError),
    ),
    "2 processing job end": (lambda: load_event("processing_job_state_change"), _prep_job, (InvalidEventError,)),
    "2 glue job end": (lambda: load_event("glue_job_state_change"), _prep_job, (InvalidEventError,)),
    "3 pipeline end": (lambda: load_event("pipeline_execution_status_change"), _pipeline, (InvalidEventError,)),
    "4 approval (SQS body)": (lambda: _sqs_body("deploy_model_sqs"), _approval, (ValidationError,)),
    "4 rejection": (lambda: load_event("model_package_rejected"), _approval, (ValidationError,)),
    "5 endpoint state": (lambda: load_event("endpoint_state_change"), _endpoint, (ValidationError,)),
    "5 deployment state": (lambda: load_event("endpoint_deployment_state_change"), _endpoint, (ValidationError,)),
    "6 alarm": (lambda: load_event("alarm_state_change"), _alarm, (InvalidEventError,)),
    "7 schedule": (lambda: load_event("drift_monitor_schedule"), _schedule, (InvalidEventError,)),
}


@pytest.mark.parametrize("route", list(ROUTES))
def test_a_mutated_sample_parses_or_is_refused_with_the_documented_error(route: str) -> None:
    sample, parse, documented = ROUTES[route]
    examples = 0

    @FUZZ
    @given(mutated(sample()))
    def check(case: tuple[Any, list[str]]) -> None:
        nonlocal examples
        examples += 1
        event, _mutations = case
        with contextlib.suppress(*documented):
            parse(event)

    check()
    print(f"fuzz parsers, route {route}: {examples} examples")
    assert examples >= EXAMPLES


# -- timestamps in both formats ---------------------------------------------------------------------

TIMES: dict[str, tuple[str, list[tuple[str, ...]], Callable[[Any], datetime | None]]] = {
    "processing": (
        "processing_job_state_change",
        [("time",), ("detail", "CreationTime"), ("detail", "ProcessingEndTime")],
        parse_prep_job_event,
    ),
    "pipeline": (
        "pipeline_execution_status_change",
        [("time",), ("detail", "executionStartTime"), ("detail", "executionEndTime")],
        parse_pipeline_execution_event,
    ),
    "registry": (
        "model_package_approved",
        [("time",), ("detail", "CreationTime"), ("detail", "LastModifiedTime")],
        ModelPackageStateChangeEvent.model_validate,
    ),
    "endpoint": (
        "endpoint_deployment_state_change",
        [
            ("time",),
            ("detail", "CreationTime"),
            ("detail", "LastModifiedTime"),
            ("detail", "PendingDeploymentSummary", "StartTime"),
        ],
        ENDPOINT_EVENT.validate_python,
    ),
    "alarm": ("alarm_state_change", [("time",)], parse_alarm_event),
    "schedule": ("drift_monitor_schedule", [("scheduled_time",)], parse_drift_run),
}


def _read(parsed: Any, path: tuple[str, ...]) -> Any:
    aliases = {
        "time": "time",
        "CreationTime": "created_at",
        "ProcessingEndTime": "ended_at",
        "executionStartTime": "started_at",
        "executionEndTime": "ended_at",
        "LastModifiedTime": "last_modified_at",
        "PendingDeploymentSummary": "pending",
        "StartTime": "started_at",
        "scheduled_time": "scheduled_time",
    }
    node = parsed
    for part in path:
        node = getattr(node, aliases.get(part, part))
    return node


@pytest.mark.parametrize("sample", list(TIMES))
def test_a_time_in_iso_or_epoch_milliseconds_is_the_same_instant(sample: str) -> None:
    name, places, parse = TIMES[sample]

    @settings(max_examples=40, deadline=None, derandomize=True, database=None)
    @given(at=instants.map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000)), style=st.integers(0, 6))
    def check(at: datetime, style: int) -> None:
        for place in places:
            event = load_event(name)
            node = event
            for part in place[:-1]:
                node = node[part]
            node[place[-1]] = render_time(at, style)
            value = _read(parse(event), place)
            # every format AWS uses names an instant; a naive one would be compared with aware clocks
            expected = at.replace(microsecond=0) if style in (0, 1) else at  # those two styles carry whole seconds
            assert value.tzinfo is not None and value.astimezone(UTC) == expected, (place, render_time(at, style))

    check()
