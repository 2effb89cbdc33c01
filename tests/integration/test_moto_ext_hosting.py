"""Pins the SageMaker hosting extension of moto (closedloop_ops.moto_ext.hosting) to AWS's behaviour."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from closedloop_ops import moto_ext
from closedloop_ops.moto_ext import hosting
from support.rollout import shared_service_models
from support.stack import ACCOUNT, REGION


@pytest.fixture(autouse=True, scope="module")
def _service_models_read_once() -> Iterator[None]:
    with shared_service_models():
        yield


DEPLOYMENT_CONFIG = {
    "BlueGreenUpdatePolicy": {
        "TrafficRoutingConfiguration": {
            "Type": "CANARY",
            "WaitIntervalInSeconds": 300,
            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
        },
        "TerminationWaitInSeconds": 600,
        "MaximumExecutionTimeoutInSeconds": 3600,
    },
    "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "closedloop-loans-endpoint-5xx"}]},
}


@pytest.fixture
def sagemaker() -> Iterator[Any]:
    from moto import mock_aws

    moto_ext.install()
    with mock_aws():
        sm = boto3.client("sagemaker", region_name=REGION)
        for name in ("m1", "m2"):
            sm.create_model(ModelName=name, PrimaryContainer={"Image": "img"}, ExecutionRoleArn="arn:aws:iam::1:role/r")
            sm.create_endpoint_config(
                EndpointConfigName=f"c-{name}",
                ProductionVariants=[
                    {
                        "VariantName": "AllTraffic",
                        "ModelName": name,
                        "InstanceType": "ml.m5.large",
                        "InitialInstanceCount": 2,
                    }
                ],
            )
        sm.create_endpoint(EndpointName="ep", EndpointConfigName="c-m1")
        yield sm


def code_and_message(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    error = exc.value.response["Error"]
    return error["Code"], error["Message"]


def test_update_endpoint_switches_config_and_keeps_the_deployment_config(sagemaker: Any) -> None:
    # When the endpoint is updated to another config with a blue/green policy
    arn = sagemaker.update_endpoint(EndpointName="ep", EndpointConfigName="c-m2", DeploymentConfig=DEPLOYMENT_CONFIG)
    # Then it serves the new config, in service, and the policy it was given is readable
    described = sagemaker.describe_endpoint(EndpointName="ep")
    assert arn["EndpointArn"] == described["EndpointArn"]
    assert described["EndpointConfigName"] == "c-m2"
    assert described["EndpointStatus"] == "InService"
    assert described["LastDeploymentConfig"] == DEPLOYMENT_CONFIG
    assert described["ProductionVariants"][0]["VariantName"] == "AllTraffic"


def test_update_endpoint_needs_an_existing_endpoint_and_config(sagemaker: Any) -> None:
    with pytest.raises(ClientError) as missing_endpoint:
        sagemaker.update_endpoint(EndpointName="nope", EndpointConfigName="c-m2")
    assert code_and_message(missing_endpoint) == (
        "ValidationException",
        f'Could not find endpoint "arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/nope".',
    )
    with pytest.raises(ClientError) as missing_config:
        sagemaker.update_endpoint(EndpointName="ep", EndpointConfigName="c-none")
    assert code_and_message(missing_config)[0] == "ValidationException"
    assert "Could not find endpoint configuration" in code_and_message(missing_config)[1]


@pytest.mark.parametrize("status", ["Creating", "Updating", "SystemUpdating", "RollingBack"])
def test_an_endpoint_not_in_service_cannot_be_updated(sagemaker: Any, status: str) -> None:
    # Given an endpoint in the middle of something
    hosting.set_endpoint_status(ACCOUNT, REGION, "ep", status)
    # When it is updated
    with pytest.raises(ClientError) as exc:
        sagemaker.update_endpoint(EndpointName="ep", EndpointConfigName="c-m2", DeploymentConfig=DEPLOYMENT_CONFIG)
    # Then AWS's error, and nothing changed
    assert code_and_message(exc) == (
        "ValidationException",
        f'Cannot update in-progress endpoint "arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/ep".',
    )
    described = sagemaker.describe_endpoint(EndpointName="ep")
    assert (described["EndpointConfigName"], described["EndpointStatus"]) == ("c-m1", status)
    assert "LastDeploymentConfig" not in described


def test_a_failed_update_leaves_the_old_config_in_service(sagemaker: Any) -> None:
    hosting.fail_next_update(ACCOUNT, REGION, "ep", reason="alarm closedloop-loans-endpoint-5xx tripped")
    sagemaker.update_endpoint(EndpointName="ep", EndpointConfigName="c-m2", DeploymentConfig=DEPLOYMENT_CONFIG)
    described = sagemaker.describe_endpoint(EndpointName="ep")
    assert described["EndpointConfigName"] == "c-m1"
    assert described["EndpointStatus"] == "InService"
    assert described["FailureReason"] == "alarm closedloop-loans-endpoint-5xx tripped"
    # and the hook is used once: the next update goes through
    sagemaker.update_endpoint(EndpointName="ep", EndpointConfigName="c-m2", DeploymentConfig=DEPLOYMENT_CONFIG)
    assert sagemaker.describe_endpoint(EndpointName="ep")["EndpointConfigName"] == "c-m2"
    assert "FailureReason" not in sagemaker.describe_endpoint(EndpointName="ep")


def test_a_held_update_stays_updating_until_finished(sagemaker: Any) -> None:
    hosting.hold_next_update(ACCOUNT, REGION, "ep")
    sagemaker.update_endpoint(EndpointName="ep", EndpointConfigName="c-m2", DeploymentConfig=DEPLOYMENT_CONFIG)
    described = sagemaker.describe_endpoint(EndpointName="ep")
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("Updating", "c-m1")
    assert described["PendingDeploymentSummary"]["EndpointConfigName"] == "c-m2"
    # a second update is refused while the first runs
    with pytest.raises(ClientError):
        sagemaker.update_endpoint(EndpointName="ep", EndpointConfigName="c-m2", DeploymentConfig=DEPLOYMENT_CONFIG)
    hosting.finish_update(ACCOUNT, REGION, "ep", succeeded=False, reason="rolled back")
    described = sagemaker.describe_endpoint(EndpointName="ep")
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", "c-m1")
    assert described["FailureReason"] == "rolled back"
    assert "PendingDeploymentSummary" not in described


@pytest.mark.parametrize(
    ("call", "label", "arn_part"),
    [
        (
            lambda sm: sm.create_model(
                ModelName="m1", PrimaryContainer={"Image": "other"}, ExecutionRoleArn="arn:aws:iam::1:role/r"
            ),
            "model",
            "model/m1",
        ),
        (
            lambda sm: sm.create_endpoint_config(
                EndpointConfigName="c-m1",
                ProductionVariants=[
                    {
                        "VariantName": "AllTraffic",
                        "ModelName": "m2",
                        "InstanceType": "ml.m5.large",
                        "InitialInstanceCount": 1,
                    }
                ],
            ),
            "endpoint configuration",
            "endpoint-config/c-m1",
        ),
        (lambda sm: sm.create_endpoint(EndpointName="ep", EndpointConfigName="c-m2"), "endpoint", "endpoint/ep"),
    ],
)
def test_creating_an_existing_resource_is_rejected_as_aws_does(
    sagemaker: Any, call: Any, label: str, arn_part: str
) -> None:
    with pytest.raises(ClientError) as exc:
        call(sagemaker)
    assert code_and_message(exc) == (
        "ValidationException",
        f'Cannot create already existing {label} "arn:aws:sagemaker:{REGION}:{ACCOUNT}:{arn_part}".',
    )
    # and the original is untouched
    assert sagemaker.describe_model(ModelName="m1")["PrimaryContainer"]["Image"] == "img"
    assert sagemaker.describe_endpoint(EndpointName="ep")["EndpointConfigName"] == "c-m1"


def test_add_tags_replaces_the_value_of_an_existing_key(sagemaker: Any) -> None:
    arn = sagemaker.describe_endpoint(EndpointName="ep")["EndpointArn"]
    sagemaker.add_tags(ResourceArn=arn, Tags=[{"Key": "outcome", "Value": "live"}, {"Key": "k", "Value": "v"}])
    sagemaker.add_tags(ResourceArn=arn, Tags=[{"Key": "outcome", "Value": "superseded"}])
    tags = {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=arn)["Tags"]}
    assert tags == {"outcome": "superseded", "k": "v"}
    assert len(sagemaker.list_tags(ResourceArn=arn)["Tags"]) == 2
