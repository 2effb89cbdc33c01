"""`closedloop dlq show` names what each dead letter is about, from the event it carries."""

from __future__ import annotations

import pytest

from closedloop_ops.operations import subject_of
from support.events import load_event


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        ("s3_object_created", "s3://{bucket}/{key} (version {version})"),
        ("model_package_approved", "{ModelPackageArn}"),
        ("pipeline_execution_status_change", "{pipelineExecutionArn}"),
        ("processing_job_state_change", "{ProcessingJobName}"),
        ("glue_job_state_change", "{jobName} run {jobRunId}"),
        ("endpoint_state_change", "{EndpointName}"),
        ("alarm_state_change", "{alarmName}"),
    ],
)
def test_every_route_s_event_names_its_subject(sample: str, expected: str) -> None:
    # Given the route's real-format event, as a dead letter carries it
    event = load_event(sample)
    detail = event["detail"]
    fields = {**detail}
    if sample == "s3_object_created":
        obj = detail["object"]
        fields = {"bucket": detail["bucket"]["name"], "key": obj["key"], "version": obj["version-id"]}
    # Then its subject is named, directly and inside a Lambda destination record
    assert subject_of(event) == expected.format(**fields)
    assert subject_of({"requestContext": {}, "requestPayload": event, "responsePayload": {}}) == subject_of(event)


def test_a_body_that_is_no_event_has_no_subject() -> None:
    assert subject_of({"raw": "not json"}) == ""
    assert subject_of(["a", "list"]) == ""
