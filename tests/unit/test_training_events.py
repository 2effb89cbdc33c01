"""Route 2's event models: the end of a Glue run or a Processing job, and the look-alikes they reject."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from closedloop.errors import InvalidEventError
from closedloop.events.jobs import GlueJobStateChangeEvent, ProcessingJobStateChangeEvent, parse_prep_job_event
from closedloop.training.prepared import dataset_of, run_arguments
from support.events import load_event

TRAINING_CHANGE = "SageMaker Training Job State Change"


def test_the_canonical_samples_parse_to_their_models() -> None:
    # Given the project's samples (same format as AWS's published ones)
    glue = parse_prep_job_event(load_event("glue_job_state_change"))
    processing = parse_prep_job_event(load_event("processing_job_state_change"))
    # Then each becomes its own model, with the fields route 2 uses
    assert isinstance(glue, GlueJobStateChangeEvent)
    assert (glue.detail.job_name, glue.detail.state) == ("closedloop-prep", "SUCCEEDED")
    assert isinstance(processing, ProcessingJobStateChangeEvent)
    assert processing.detail.status == "Completed"
    assert processing.detail.app_specification is not None
    assert "--manifest" in processing.detail.app_specification.container_arguments


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1795771277000, datetime(2026, 11, 27, 9, 21, 17, tzinfo=UTC)),  # epoch ms, as the published sample
        ("1795771277000", datetime(2026, 11, 27, 9, 21, 17, tzinfo=UTC)),  # epoch ms as a string
        ("2026-11-27T09:21:17Z", datetime(2026, 11, 27, 9, 21, 17, tzinfo=UTC)),  # ISO
        ("2026-11-27T09:21:17.000+00:00", datetime(2026, 11, 27, 9, 21, 17, tzinfo=UTC)),
    ],
)
def test_processing_timestamps_parse_from_epoch_milliseconds_and_iso(value: Any, expected: datetime) -> None:
    # Given the sample with its end time in one of the formats AWS uses
    event = load_event("processing_job_state_change")
    event["detail"]["ProcessingEndTime"] = value
    # When parsed
    parsed = parse_prep_job_event(event)
    # Then the time is the same instant
    assert isinstance(parsed, ProcessingJobStateChangeEvent)
    assert parsed.detail.ended_at == expected


def test_the_envelope_time_may_be_epoch_milliseconds_too() -> None:
    event = load_event("glue_job_state_change")
    event["time"] = "1795771182000"
    assert parse_prep_job_event(event).time == datetime(2026, 11, 27, 9, 19, 42, tzinfo=UTC)


def _status(value: str) -> Any:
    return lambda e: e["detail"].update(ProcessingJobStatus=value)


def _variant(name: str, change: Any) -> dict[str, Any]:
    event = copy.deepcopy(load_event(name))
    change(event)
    return event


@pytest.mark.parametrize(
    ("event", "why"),
    [
        (_variant("glue_job_state_change", lambda e: e.update({"detail-type": "Glue Job Run Status"})), "delay alert"),
        (_variant("glue_job_state_change", lambda e: e["detail"].update(state="RUNNING")), "non-terminal"),
        (_variant("glue_job_state_change", lambda e: e.update(source="aws.sagemaker")), "wrong source"),
        (_variant("glue_job_state_change", lambda e: e["detail"].pop("jobRunId")), "no run id"),
        (
            _variant("processing_job_state_change", lambda e: e["detail"].update(ProcessingJobStatus="InProgress")),
            "running",
        ),
        (
            _variant("processing_job_state_change", lambda e: e["detail"].update(ProcessingJobStatus="Stopping")),
            "stopping",
        ),
        (
            _variant(
                "processing_job_state_change",
                lambda e: e.update({"detail-type": "SageMaker Training Job State Change"}),
            ),
            "training job",
        ),
        (_variant("processing_job_state_change", lambda e: e["detail"].update(ProcessingEndTime="yesterday")), "time"),
        ({"alarmArn": "arn:aws:cloudwatch:eu-west-1:111122223333:alarm:x"}, "not an EventBridge event"),
    ],
)
def test_look_alikes_and_malformed_details_are_rejected(event: dict[str, Any], why: str) -> None:
    with pytest.raises(InvalidEventError) as raised:
        parse_prep_job_event(event)
    # The problems say where, never the values
    assert raised.value.context["problems"], why
    assert "yesterday" not in str(raised.value.as_dict())


def test_a_duplicated_source_key_is_the_source_it_names() -> None:
    event = load_event("processing_job_state_change")
    event["source"] = ["aws.sagemaker"]
    assert isinstance(parse_prep_job_event(event), ProcessingJobStateChangeEvent)


@pytest.mark.parametrize(
    "arguments",
    [
        ["--manifest", "s3://b/manifests/loans/r1/input.json", "--run-id", "r1", "--engine", "processing"],
        ["--engine", "processing", "--manifest", "s3://b/manifests/loans/r1/input.json", "--run-id", "r1"],
        ["--manifest=s3://b/manifests/loans/r1/input.json", "--run-id=r1"],
        {"--manifest": "s3://b/manifests/loans/r1/input.json", "--run-id": "r1", "--JOB_ID": "j"},
    ],
)
def test_the_run_is_found_in_processing_and_glue_arguments(arguments: Any) -> None:
    found = run_arguments(arguments)
    assert (found.manifest_uri, found.run_id) == ("s3://b/manifests/loans/r1/input.json", "r1")


@pytest.mark.parametrize("arguments", [[], ["--manifest", "s3://b/k"], {"--run-id": "r1"}])
def test_arguments_without_a_run_are_an_invalid_event(arguments: Any) -> None:
    with pytest.raises(InvalidEventError):
        run_arguments(arguments)


@pytest.mark.parametrize(
    ("uri", "dataset"),
    [
        ("s3://b/manifests/loans/r1/input.json", "loans"),
        ("s3://b/other/loans/r1/input.json", ""),
        ("s3://b/manifests/loans/input.json", ""),
        ("https://b/manifests/loans/r1/input.json", ""),
    ],
)
def test_the_dataset_comes_from_the_input_manifest_key(uri: str, dataset: str) -> None:
    assert dataset_of(uri, "manifests/") == dataset


def test_the_start_request_puts_the_trigger_reason_on_one_line() -> None:
    from closedloop.training.requests import build_start_pipeline_request, client_request_token

    request = build_start_pipeline_request(
        pipeline_name="closedloop-training",
        input_data_uri="s3://d/prepared/loans/r/data.csv",
        prepared_manifest_uri="s3://d/prepared/loans/r/manifest.json",
        prep_run_id="r",
        code_version="c",
        trigger="alarm",
        trigger_reason="closedloop-loans-drift-features;\nALARM(a) OR\n  ALARM(b)" + " x" * 600,
        model_group="closedloop-loans",
        client_request_token=client_request_token("alarm", "closedloop-loans-drift-features", "t"),
    )
    reason = {p["Name"]: p["Value"] for p in request["PipelineParameters"]}["TriggerReason"]
    assert "\n" not in reason and reason.startswith("closedloop-loans-drift-features; ALARM(a) OR ALARM(b) x x")
    assert len(reason) == 1000
    assert "\n" not in request["PipelineExecutionDescription"]
    assert len(request["ClientRequestToken"]) == 64
