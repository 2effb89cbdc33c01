"""Fuzzing the parsers: every route's real-format sample, mutated, parses into what it says or is refused
with the documented error.

For each mutated event exactly one of two things holds, and each is checked:

* it parses, and the model holds the event's own values: every field the route reads equals the
  field of the event (strings as sent — an S3 key possibly URL-decoded —, numbers as numbers,
  times as timezone-aware instants), and the values the route derives from them (keys,
  identities, the trigger summary) come out without raising;
* or it is refused with the documented error, of exactly that type: `InvalidEventError` for the
  EventBridge routes (raised, so Lambda's on-failure destination keeps it), carrying a non-empty
  `problems` list that says where and why; pydantic's `ValidationError` for the SQS-fed routes (a
  batch item failure, or the approval queue's DLQ). Neither may carry a value of the event: what
  goes to a DLQ, a log or the ledger names places and reasons only.

Anything else — a TypeError, a KeyError, an OverflowError, a subclass nobody documented — fails the
test. The handler-level fuzz with side effects is in `tests/integration/test_fuzz_handlers.py`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, unquote_plus

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError

from closedloop.dataprep.arrival import RawObject, Skipped, raw_object_from_event
from closedloop.errors import InvalidEventError, UnknownDatasetError
from closedloop.events.base import validation_problems
from closedloop.events.cloudwatch import AlarmStateChangeEvent, parse_alarm_event
from closedloop.events.endpoint import ENDPOINT_EVENT, EndpointDeploymentStateChangeEvent, api_status
from closedloop.events.jobs import _PREP_JOB_EVENT, ProcessingJobStateChangeEvent, parse_prep_job_event
from closedloop.events.pipeline import PipelineExecutionStatusChangeEvent, parse_pipeline_execution_event
from closedloop.events.registry import ModelPackageStateChangeEvent
from closedloop.events.s3 import ObjectCreatedEvent
from closedloop.events.scheduler import DriftMonitorRun, parse_drift_run
from closedloop.retrain.service import AlarmTrigger
from closedloop.training.prepared import run_arguments
from support.events import load_event
from support.mutations import instants, is_timestamp, mutated, render_time, tricky_text, unicode_text, wrong_types

EXAMPLES = 200
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
DATA_BUCKET = "closedloop-dev-databucket-1x2y3z4w5v6u"
MISSING = object()
Path = tuple[str | int, ...]


def at(event: Any, path: Path) -> Any:
    """The event's value at `path`, or MISSING."""
    node = event
    for part in path:
        inside = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if inside or (isinstance(node, dict) and part in node):
            node = node[part]
        else:
            return MISSING
    return node


def same_text(sent: Any, held: Any) -> None:
    assert held == sent, (sent, held)


def same_number(sent: Any, held: Any) -> None:
    # a JSON number, or a number written as a string (pydantic's lax mode reads both)
    assert isinstance(held, int | float) and float(held) == float(sent), (sent, held)


def same_instant(sent: Any, held: Any) -> None:
    if sent is None:  # an optional time sent as null is no time
        assert held is None, (sent, held)
        return
    # every format AWS uses names an instant; a naive time would be compared with aware clocks
    assert isinstance(held, datetime) and held.tzinfo is not None, (sent, held)
    if is_timestamp(sent):
        if isinstance(sent, str) and not sent.replace(".", "", 1).isdigit():
            expected = datetime.fromisoformat(sent)
        else:
            expected = datetime.fromtimestamp(float(sent) / 1000, UTC)
        assert abs((held - expected).total_seconds()) < 0.001, (sent, held)


def same_list(sent: Any, held: Any) -> None:
    assert list(held) == sent, (sent, held)


Field = tuple[Path, Callable[[Any], Any], Callable[[Any, Any], None]]
ENVELOPE: list[Field] = [
    (("id",), lambda m: m.id, same_text),
    (("account",), lambda m: m.account, same_text),
    (("region",), lambda m: m.region, same_text),
    (("detail-type",), lambda m: m.detail_type, same_text),
    (("time",), lambda m: m.time, same_instant),
    (("resources",), lambda m: m.resources, same_list),
]


def holds(event: Any, parsed: Any, fields: list[Field]) -> None:
    """The parsed model holds the event's own value in every field the route reads."""
    for path, read, same in fields:
        sent = at(event, path)
        if sent is not MISSING:
            same(sent, read(parsed))


# -- what each route reads ---------------------------------------------------------------------------


def _upload(body: Any) -> None:
    parsed = ObjectCreatedEvent.model_validate_json(json.dumps(body))
    holds(
        body,
        parsed,
        [
            *ENVELOPE,
            (("detail", "bucket", "name"), lambda m: m.detail.bucket.name, same_text),
            (("detail", "object", "size"), lambda m: m.detail.object.size, same_number),
            (("detail", "object", "etag"), lambda m: m.detail.object.etag, same_text),
            (("detail", "object", "version-id"), lambda m: m.detail.object.version_id, same_text),
        ],
    )
    obj = raw_object_from_event(parsed, data_bucket=DATA_BUCKET, raw_prefix="raw/")
    if isinstance(obj, Skipped):
        assert obj.reason == "folder_marker" and body["detail"]["object"]["key"].endswith("/")
        return
    assert isinstance(obj, RawObject)
    sent = body["detail"]["object"]
    # S3 URL-encodes keys in its events: the key taken is the one sent, or that decoded
    assert obj.key in {sent["key"], unquote(sent["key"]), unquote_plus(sent["key"])}, (sent["key"], obj.key)
    assert (obj.bucket, obj.size, obj.etag, obj.event_id) == (
        DATA_BUCKET,
        parsed.detail.object.size,
        sent["etag"],
        body["id"],
    )
    # a version the run can name: the data bucket is versioned
    assert obj.version_id not in (None, "", "null") and obj.version_id == sent["version-id"]
    assert obj.key.startswith(f"raw/{obj.dataset}/")
    assert obj.identity == f"{DATA_BUCKET}/{obj.key}#{obj.version_id}"


def _prep_job(event: Any) -> None:
    parsed = parse_prep_job_event(event)
    if isinstance(parsed, ProcessingJobStateChangeEvent):
        detail: list[Field] = [
            (("detail", "ProcessingJobName"), lambda m: m.detail.job_name, same_text),
            (("detail", "ProcessingJobStatus"), lambda m: m.detail.status, same_text),
            (("detail", "CreationTime"), lambda m: m.detail.created_at, same_instant),
            (("detail", "ProcessingEndTime"), lambda m: m.detail.ended_at, same_instant),
        ]
        if parsed.detail.app_specification is not None:
            arguments = parsed.detail.app_specification.container_arguments
            same_list(event["detail"]["AppSpecification"].get("ContainerArguments", []), arguments)
            run_arguments(arguments)
    else:
        detail = [
            (("detail", "jobName"), lambda m: m.detail.job_name, same_text),
            (("detail", "jobRunId"), lambda m: m.detail.job_run_id, same_text),
            (("detail", "state"), lambda m: m.detail.state, same_text),
        ]
    holds(event, parsed, [*ENVELOPE, *detail])


def _pipeline(event: Any) -> None:
    parsed = parse_pipeline_execution_event(event)
    holds(
        event,
        parsed,
        [
            *ENVELOPE,
            (("detail", "pipelineArn"), lambda m: m.detail.pipeline_arn, same_text),
            (("detail", "pipelineExecutionArn"), lambda m: m.detail.execution_arn, same_text),
            (("detail", "currentPipelineExecutionStatus"), lambda m: m.detail.status, same_text),
            (("detail", "executionStartTime"), lambda m: m.detail.started_at, same_instant),
            (("detail", "executionEndTime"), lambda m: m.detail.ended_at, same_instant),
        ],
    )
    assert parsed.detail.pipeline_name == event["detail"]["pipelineArn"].rsplit("/", 1)[1]


def _approval(body: Any) -> None:
    parsed = ModelPackageStateChangeEvent.model_validate_json(json.dumps(body))
    holds(
        body,
        parsed,
        [
            *ENVELOPE,
            (("detail", "ModelPackageGroupName"), lambda m: m.detail.group, same_text),
            (("detail", "ModelPackageVersion"), lambda m: m.detail.version, same_number),
            (("detail", "ModelPackageArn"), lambda m: m.detail.arn, same_text),
            (("detail", "ModelApprovalStatus"), lambda m: m.detail.approval_status, same_text),
            (("detail", "CreationTime"), lambda m: m.detail.created_at, same_instant),
            (("detail", "LastModifiedTime"), lambda m: m.detail.last_modified_at, same_instant),
        ],
    )
    updated = at(body, ("detail", "UpdatedModelPackageFields"))
    assert parsed.detail.status_changed is (updated in (MISSING, None) or "ModelApprovalStatus" in updated)


def _same_status(sent: Any, held: Any) -> None:
    # the event's IN_SERVICE, or DescribeEndpoint's InService spelling of it
    assert held == sent or api_status(held) == sent, (sent, held)


def _endpoint(event: Any) -> None:
    parsed = ENDPOINT_EVENT.validate_python(event)
    holds(
        event,
        parsed,
        [
            *ENVELOPE,
            (("detail", "EndpointName"), lambda m: m.detail.endpoint_name, same_text),
            (("detail", "EndpointArn"), lambda m: m.detail.endpoint_arn, same_text),
            (("detail", "EndpointStatus"), lambda m: m.detail.status, _same_status),
            (("detail", "CreationTime"), lambda m: m.detail.created_at, same_instant),
            (("detail", "LastModifiedTime"), lambda m: m.detail.last_modified_at, same_instant),
        ],
    )
    if isinstance(parsed, EndpointDeploymentStateChangeEvent) and parsed.detail.pending is not None:
        same_text(
            event["detail"]["PendingDeploymentSummary"]["EndpointConfigName"], parsed.detail.pending.endpoint_config
        )


def _alarm(event: Any) -> None:
    parsed = parse_alarm_event(event)
    holds(
        event,
        parsed,
        [
            *ENVELOPE,
            (("detail", "alarmName"), lambda m: m.detail.alarm_name, same_text),
            (("detail", "state", "value"), lambda m: m.detail.state.value, same_text),
            (("detail", "state", "timestamp"), lambda m: m.detail.state.timestamp, same_text),
            (("detail", "previousState", "value"), lambda m: m.detail.previous_state.value, same_text),
        ],
    )
    trigger = AlarmTrigger.from_event(parsed)
    assert trigger.business_key == f"alarm:{event['detail']['alarmName']}@{event['detail']['state']['timestamp']}"
    assert parsed.detail.state.at.tzinfo is not None


def _schedule(event: Any) -> None:
    parsed = parse_drift_run(event)
    holds(
        event,
        parsed,
        [
            (("action",), lambda m: m.action, same_text),
            (("schedule_arn",), lambda m: m.schedule_arn, same_text),
            (("execution_id",), lambda m: m.execution_id, same_text),
            (("attempt",), lambda m: m.attempt, same_number),
            (("scheduled_time",), lambda m: m.scheduled_time, same_instant),
        ],
    )


def _sqs_body(name: str) -> Any:
    return json.loads(load_event(name)["Records"][0]["body"])


class Route(BaseModel):
    sample: Callable[[], Any]
    parse: Callable[[Any], None]
    documented: tuple[type[Exception], ...]
    models: tuple[Any, ...]  # what the route's refusals may name (fields, literals, patterns)
    reads: tuple[Path, ...]  # the fields the route reads: where a targeted mutation lands


ENVELOPE_READS: tuple[Path, ...] = (("id",), ("account",), ("region",), ("detail-type",), ("time",), ("resources",))
UPLOAD_READS = (*ENVELOPE_READS, *(("detail", "object", f) for f in ("key", "size", "etag", "version-id")))
UPLOAD_READS += (("detail", "bucket", "name"),)
JOB_READS = (*ENVELOPE_READS, *(("detail", f) for f in ("ProcessingJobName", "ProcessingJobStatus", "CreationTime")))
JOB_READS += tuple(("detail", f) for f in ("jobName", "jobRunId", "state"))
PIPELINE_READS = (*ENVELOPE_READS, *(("detail", f) for f in ("pipelineArn", "pipelineExecutionArn")))
PIPELINE_READS += (("detail", "currentPipelineExecutionStatus"), ("detail", "executionStartTime"))
PACKAGE_READS = (*ENVELOPE_READS, *(("detail", f) for f in ("ModelPackageGroupName", "ModelPackageVersion")))
PACKAGE_READS += tuple(("detail", f) for f in ("ModelPackageArn", "ModelApprovalStatus", "CreationTime"))
ENDPOINT_READS = (*ENVELOPE_READS, *(("detail", f) for f in ("EndpointName", "EndpointArn", "EndpointStatus")))
ENDPOINT_READS += (("detail", "CreationTime"), ("detail", "PendingDeploymentSummary", "EndpointConfigName"))
ALARM_READS = (*ENVELOPE_READS, ("detail", "alarmName"), ("detail", "state", "value"))
ALARM_READS += (("detail", "state", "timestamp"), ("detail", "previousState", "value"))
SCHEDULE_READS: tuple[Path, ...] = (
    ("action",),
    ("schedule_arn",),
    ("execution_id",),
    ("attempt",),
    ("scheduled_time",),
)


ROUTES: dict[str, Route] = {
    "1 upload (SQS body)": Route(
        sample=lambda: _sqs_body("start_data_prep_sqs"),
        parse=_upload,
        documented=(ValidationError, InvalidEventError, UnknownDatasetError),
        models=(ObjectCreatedEvent,),
        reads=UPLOAD_READS,
    ),
    "2 processing job end": Route(
        sample=lambda: load_event("processing_job_state_change"),
        parse=_prep_job,
        documented=(InvalidEventError,),
        models=(_PREP_JOB_EVENT,),
        reads=JOB_READS,
    ),
    "2 glue job end": Route(
        sample=lambda: load_event("glue_job_state_change"),
        parse=_prep_job,
        documented=(InvalidEventError,),
        models=(_PREP_JOB_EVENT,),
        reads=JOB_READS,
    ),
    "3 pipeline end": Route(
        sample=lambda: load_event("pipeline_execution_status_change"),
        parse=_pipeline,
        documented=(InvalidEventError,),
        models=(PipelineExecutionStatusChangeEvent,),
        reads=PIPELINE_READS,
    ),
    "4 approval (SQS body)": Route(
        sample=lambda: _sqs_body("deploy_model_sqs"),
        parse=_approval,
        documented=(ValidationError,),
        models=(ModelPackageStateChangeEvent,),
        reads=PACKAGE_READS,
    ),
    "4 rejection": Route(
        sample=lambda: load_event("model_package_rejected"),
        parse=_approval,
        documented=(ValidationError,),
        models=(ModelPackageStateChangeEvent,),
        reads=PACKAGE_READS,
    ),
    "5 endpoint state": Route(
        sample=lambda: load_event("endpoint_state_change"),
        parse=_endpoint,
        documented=(ValidationError,),
        models=(ENDPOINT_EVENT,),
        reads=ENDPOINT_READS,
    ),
    "5 deployment state": Route(
        sample=lambda: load_event("endpoint_deployment_state_change"),
        parse=_endpoint,
        documented=(ValidationError,),
        models=(ENDPOINT_EVENT,),
        reads=ENDPOINT_READS,
    ),
    "6 alarm": Route(
        sample=lambda: load_event("alarm_state_change"),
        parse=_alarm,
        documented=(InvalidEventError,),
        models=(AlarmStateChangeEvent,),
        reads=ALARM_READS,
    ),
    "7 schedule": Route(
        sample=lambda: load_event("drift_monitor_schedule"),
        parse=_schedule,
        documented=(InvalidEventError,),
        models=(DriftMonitorRun,),
        reads=SCHEDULE_READS,
    ),
}


def _vocabulary(route: Route) -> str:
    """What a route's refusals may say without leaking: what its models declare (field names,
    aliases, literals, patterns) and the fixed sentence of its refusal."""
    schemas = [m.json_schema() if isinstance(m, TypeAdapter) else m.model_json_schema() for m in route.models]
    try:
        route.parse({})
    except InvalidEventError as error:
        sentence = error.message
    except ValidationError:
        sentence = ""
    return json.dumps([schemas, sentence], ensure_ascii=False)


def _values(document: Any) -> Iterator[str]:
    """The event's values as text (keys are places, not values)."""
    if isinstance(document, dict):
        for value in document.values():
            yield from _values(value)
    elif isinstance(document, list):
        for value in document:
            yield from _values(value)
    elif isinstance(document, str):
        yield document
    elif isinstance(document, int | float) and not isinstance(document, bool) and math.isfinite(document):
        yield str(document)


def refusal(error: Exception) -> Any:
    """What a refusal carries on to a DLQ, a log, the ledger."""
    if isinstance(error, ValidationError):
        return validation_problems(error)
    assert isinstance(error, InvalidEventError)
    return {"message": error.message, "problems": error.context.get("problems")}


def check_refusal(route: Route, event: Any, error: Exception, vocabulary: str) -> None:
    # exactly a documented type: a subclass nobody documented is a crash with a reason attached
    assert type(error) in route.documented, f"undocumented {type(error).__name__}: {error}"
    carried = refusal(error)
    if isinstance(error, ValidationError) or (isinstance(error, InvalidEventError) and "problems" in error.context):
        problems = carried if isinstance(error, ValidationError) else carried["problems"]
        # it says where and why
        assert problems, "a refusal without a problem"
        assert all(set(p) == {"at", "problem"} and p["problem"] for p in problems), problems
    else:
        # only the route-1 checks of a parsed event raise without `problems` (another bucket, a bad key…)
        assert route.parse is _upload, f"a refusal without `problems`: {error}"
    text = json.dumps(carried, ensure_ascii=False)
    leaked = [v[:40] for v in _values(event) if len(v) >= 4 and v in text and v not in vocabulary]
    assert not leaked, f"the refusal carries values of the event: {leaked}"


@st.composite
def targeted(draw: st.DrawFn, sample: Any, reads: tuple[Path, ...]) -> tuple[Any, list[str]]:
    """The sample with one field the route reads dropped, emptied, retyped, padded or replaced."""
    event = json.loads(json.dumps(sample))
    path = draw(st.sampled_from([p for p in reads if at(event, p) is not MISSING]))
    parent = at(event, path[:-1])
    value = parent[path[-1]]
    kind = draw(st.sampled_from(["drop", "empty", "wrong-type", "unicode", "padded", "number-string"]))
    if kind == "drop":
        del parent[path[-1]]
    elif kind == "empty":
        parent[path[-1]] = "" if isinstance(value, str) else None
    elif kind == "wrong-type":
        parent[path[-1]] = draw(wrong_types)
    elif kind == "unicode":
        parent[path[-1]] = draw(st.one_of(unicode_text, tricky_text))
    elif kind == "padded":
        pad = draw(st.sampled_from([" ", "\n", "\t", "\u00a0", "\u200b"]))
        parent[path[-1]] = draw(st.sampled_from([f"{value}{pad}", f"{pad}{value}"]))
    else:
        parent[path[-1]] = str(value) if not isinstance(value, str) else draw(st.integers(-10, 10**6))
    return event, [f"{kind} at {path}"]


@pytest.mark.parametrize("name", list(ROUTES))
def test_a_mutated_field_the_route_reads_is_held_as_sent_or_refused(name: str) -> None:
    route = ROUTES[name]
    vocabulary = _vocabulary(route)
    outcomes = {"parsed": 0, "refused": 0}

    @settings(FUZZ, max_examples=100)
    @given(targeted(route.sample(), route.reads))
    def check(case: tuple[Any, list[str]]) -> None:
        event, _mutation = case
        # When a field the route reads is broken or padded, and the event parsed
        try:
            route.parse(event)
        except route.documented as error:
            # Then it is refused as documented, or the model holds exactly what was sent
            check_refusal(route, event, error, vocabulary)
            outcomes["refused"] += 1
        else:
            outcomes["parsed"] += 1

    check()
    assert outcomes["parsed"] > 0 and outcomes["refused"] > 0, outcomes


@pytest.mark.parametrize("name", list(ROUTES))
def test_a_mutated_sample_parses_into_its_own_values_or_is_refused_with_the_documented_error(name: str) -> None:
    route = ROUTES[name]
    vocabulary = _vocabulary(route)
    # Given the route's sample parses as it is
    route.parse(route.sample())
    outcomes = {"parsed": 0, "refused": 0}

    @FUZZ
    @given(mutated(route.sample()))
    def check(case: tuple[Any, list[str]]) -> None:
        event, _mutations = case
        # When it is parsed after one to three mutations
        try:
            route.parse(event)
        except route.documented as error:
            # Then it is refused with the documented error, saying where and why, and no value
            check_refusal(route, event, error, vocabulary)
            outcomes["refused"] += 1
        else:
            # Or it parsed, and the model held the event's own values (checked by the parse)
            outcomes["parsed"] += 1

    check()
    print(f"fuzz parsers, route {name}: {outcomes}")
    # And both outcomes happened: a fuzz that only ever refuses (or only parses) tests one half
    assert outcomes["parsed"] > 0 and outcomes["refused"] > 0, outcomes


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
