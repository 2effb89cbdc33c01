"""Parser models of routes 4 and 5 against the project's samples, AWS's published quirks and look-alikes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from closedloop.events.endpoint import (
    ENDPOINT_EVENT,
    EndpointDeploymentStateChangeEvent,
    EndpointStateChangeEvent,
    api_status,
)
from closedloop.events.registry import ModelPackageStateChangeEvent, ModelPackageStateChangeSqsRecord
from support.events import load_event


def test_the_approved_and_rejected_samples_parse() -> None:
    approved = ModelPackageStateChangeEvent.model_validate(load_event("model_package_approved"))
    rejected = ModelPackageStateChangeEvent.model_validate(load_event("model_package_rejected"))
    assert (approved.detail.approval_status, rejected.detail.approval_status) == ("Approved", "Rejected")
    assert approved.detail.version == 3 and approved.detail.group == "closedloop-loans"
    # CreationTime is epoch milliseconds in what SageMaker sends
    assert approved.detail.created_at == datetime(2026, 11, 27, 11, 40, 16, 480000, tzinfo=UTC)


def test_the_sqs_sample_carries_the_approved_sample() -> None:
    record = ModelPackageStateChangeSqsRecord.model_validate(load_event("deploy_model_sqs")["Records"][0])
    assert record.body.model_dump(by_alias=True, mode="json") == ModelPackageStateChangeEvent.model_validate(
        load_event("model_package_approved")
    ).model_dump(by_alias=True, mode="json")


def test_the_documentations_quirks_parse() -> None:
    # Given the documentation's shape: `source` repeated (the last one, a list, wins in JSON parsers),
    # ISO timestamps, no ModelPackageName
    text = json.dumps(load_event("model_package_rejected"))
    text = text.replace('"source": "aws.sagemaker",', '"source": "aws.sagemaker", "source": ["aws.sagemaker"],')
    event = json.loads(text)
    assert event["source"] == ["aws.sagemaker"]
    event["detail"]["CreationTime"] = "2021-02-24T17:00:14Z"
    del event["detail"]["ModelPackageName"]
    # Then it parses as the single source it names
    parsed = ModelPackageStateChangeEvent.model_validate(event)
    assert parsed.source == "aws.sagemaker"
    assert parsed.detail.created_at == datetime(2021, 2, 24, 17, 0, 14, tzinfo=UTC)


def test_updates_of_other_fields_say_so() -> None:
    # Given the newer event format, which lists what an update changed
    event = load_event("model_package_approved")
    assert ModelPackageStateChangeEvent.model_validate(event).detail.status_changed  # older format: unknown
    event["detail"]["UpdatedModelPackageFields"] = ["ModelLifeCycle"]
    assert not ModelPackageStateChangeEvent.model_validate(event).detail.status_changed
    event["detail"]["UpdatedModelPackageFields"] = ["ApprovalDescription", "ModelApprovalStatus"]
    assert ModelPackageStateChangeEvent.model_validate(event).detail.status_changed


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e["detail"].update({"ModelApprovalStatus": "PendingManualApproval"}),
        lambda e: e.update({"detail-type": "SageMaker Model Package Group State Change"}),
        lambda e: e.update({"source": "aws.s3"}),
        lambda e: e.update({"source": ["aws.sagemaker", "aws.s3"]}),
        lambda e: e["detail"].update({"ModelPackageVersion": "three"}),
        lambda e: e["detail"].update({"ModelPackageArn": "arn:aws:sagemaker:eu-west-1:1:endpoint/x"}),
        lambda e: e["detail"].pop("ModelPackageGroupName"),
    ],
)
def test_look_alikes_are_rejected(mutate: Any) -> None:
    event = load_event("model_package_approved")
    mutate(event)
    with pytest.raises(ValidationError):
        ModelPackageStateChangeEvent.model_validate(event)


def test_the_endpoint_samples_parse_into_their_own_models() -> None:
    state = ENDPOINT_EVENT.validate_python(load_event("endpoint_state_change"))
    progress = ENDPOINT_EVENT.validate_python(load_event("endpoint_deployment_state_change"))
    assert isinstance(state, EndpointStateChangeEvent) and isinstance(progress, EndpointDeploymentStateChangeEvent)
    # the envelope's time is an epoch-millisecond string; statuses are upper case
    assert state.time == datetime(2026, 11, 27, 12, 5, 31, 904000, tzinfo=UTC)
    assert (state.detail.status, api_status(state.detail.status)) == ("IN_SERVICE", "InService")
    assert progress.detail.pending is not None
    assert progress.detail.pending.endpoint_config == "closedloop-loans-v3-b71d24f0"
    assert progress.detail.pending.variants[0].statuses[0].status == "Baking"


def test_the_documented_endpoint_quirks_parse() -> None:
    event = load_event("endpoint_state_change")
    event["detail"]["ProductionVariants"] = [{"DesiredWeight": 1.0, "DesiredInstanceCount": 1.0}]  # no name
    event["detail"]["EndpointName"] = "Closedloop-Endpoint"  # the name keeps its case, the ARN does not
    event["detail"]["EndpointStatus"] = "InService"  # the API's spelling is accepted too
    parsed = ENDPOINT_EVENT.validate_python(event)
    assert parsed.detail.status == "IN_SERVICE"
    assert parsed.detail.variants[0].name is None


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e.update({"detail-type": "SageMaker Endpoint Config State Change"}),
        lambda e: e.update({"source": "aws.cloudwatch"}),
        lambda e: e["detail"].update({"EndpointStatus": "MELTING"}),
        lambda e: e["detail"].pop("EndpointName"),
        lambda e: e["detail"].update({"EndpointArn": "arn:aws:sagemaker:eu-west-1:1:model/x"}),
    ],
)
def test_endpoint_look_alikes_are_rejected(mutate: Any) -> None:
    event = load_event("endpoint_state_change")
    mutate(event)
    with pytest.raises(ValidationError):
        ENDPOINT_EVENT.validate_python(event)


@pytest.mark.parametrize(
    ("event_status", "api"),
    [
        ("IN_SERVICE", "InService"),
        ("UPDATE_ROLLBACK_FAILED", "UpdateRollbackFailed"),
        ("OUT_OF_SERVICE", "OutOfService"),
    ],
)
def test_status_spellings(event_status: str, api: str) -> None:
    assert api_status(event_status) == api
