"""The exact SageMaker requests of a rollout, pinned with botocore's Stubber (no network, no moto)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from closedloop import lineage
from closedloop.deploy.hosting import Hosting
from closedloop.deploy.models import Endpoint, ModelPackage
from closedloop.deploy.requests import (
    build_create_endpoint_request,
    build_create_model_request,
    build_deployment_config,
    build_endpoint_config_request,
    build_update_endpoint_request,
    endpoint_config_name,
    lineage_tags,
    model_name,
    resource_name,
    validate_rollout_settings,
)
from closedloop.errors import EndpointBusyError, SettingsError
from closedloop.settings import Settings
from support.stack import stack_env

ACCOUNT = "123456789012"
PACKAGE_ARN = f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:model-package/closedloop-loans/3"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/closedloop-test-ModelExecutionRole"
ALARMS = "closedloop-loans-endpoint-5xx,closedloop-loans-endpoint-latency,closedloop-loans-drift-features"
APPROVAL = f"manual:arn:aws:sts::{ACCOUNT}:assumed-role/ComplianceOfficer/jane"


def settings(**overrides: str) -> Settings:
    return Settings.from_environ({**stack_env(), "ROLLBACK_ALARM_NAMES": ALARMS, **overrides})


PACKAGE = ModelPackage(
    arn=PACKAGE_ARN,
    group="closedloop-loans",
    version=3,
    approval_status="Approved",
    package_status="Completed",
    approved_by=f"arn:aws:sts::{ACCOUNT}:assumed-role/ComplianceOfficer/jane",
    metadata={
        lineage.PIPELINE_EXECUTION: f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:pipeline/closedloop-training/execution/abc",
        lineage.PREPARED_MANIFEST: "s3://closedloop-test-data/prepared/loans/run1/manifest.json",
        lineage.CODE_VERSION: "4b8e2f1a9c3d7e60",
    },
)
TAGS = [
    {"Key": "closedloop:model-package", "Value": PACKAGE_ARN},
    {"Key": "closedloop:model-version", "Value": "3"},
    {
        "Key": "closedloop:pipeline-execution",
        "Value": f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:pipeline/closedloop-training/execution/abc",
    },
    {"Key": "closedloop:prepared-manifest", "Value": "s3://closedloop-test-data/prepared/loans/run1/manifest.json"},
    {"Key": "closedloop:code-version", "Value": "4b8e2f1a9c3d7e60"},
    {"Key": "closedloop:approval", "Value": APPROVAL},
]


@pytest.fixture(scope="module")
def client() -> Any:
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="eu-west-1"
    ).client("sagemaker")


@pytest.fixture
def stub(client: Any) -> Iterator[Stubber]:
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def test_names_are_deterministic_valid_and_inside_the_iam_scope() -> None:
    s = settings()
    assert model_name(s, PACKAGE) == model_name(s, PACKAGE)
    assert model_name(s, PACKAGE).startswith("closedloop-loans-v3-")
    assert endpoint_config_name(s, PACKAGE).startswith("closedloop-loans-v3-")
    # a setting that shapes the config gives a new config (and so a real rollout), not a new model
    bigger = settings(ENDPOINT_INSTANCE_TYPE="ml.c5.xlarge")
    assert endpoint_config_name(bigger, PACKAGE) != endpoint_config_name(s, PACKAGE)
    assert model_name(bigger, PACKAGE) == model_name(s, PACKAGE)
    long = resource_name("e" * 63, 123456, "abcdef12")
    assert len(long) == 63 and long.endswith("-v123456-abcdef12")


def test_create_model_request_is_exactly_the_package_version(client: Any, stub: Stubber) -> None:
    request = build_create_model_request(settings(), PACKAGE, tags=lineage_tags(PACKAGE, APPROVAL))
    stub.add_response(
        "create_model",
        {"ModelArn": f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:model/{request['ModelName']}"},
        expected_params={
            "ModelName": model_name(settings(), PACKAGE),
            "PrimaryContainer": {"ModelPackageName": PACKAGE_ARN},
            "ExecutionRoleArn": ROLE,
            "Tags": TAGS,
        },
    )
    assert Hosting(client, "closedloop-loans").ensure_model(request) is True


def test_create_endpoint_config_request_captures_csv_to_the_capture_bucket(client: Any, stub: Stubber) -> None:
    s = settings(CAPTURE_SAMPLING_PERCENT="25", ENDPOINT_INSTANCE_COUNT="3")
    request = build_endpoint_config_request(s, PACKAGE, tags=lineage_tags(PACKAGE, APPROVAL))
    stub.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:endpoint-config/x"},
        expected_params={
            "EndpointConfigName": endpoint_config_name(s, PACKAGE),
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "ModelName": model_name(s, PACKAGE),
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 3,
                    "InitialVariantWeight": 1.0,
                }
            ],
            "DataCaptureConfig": {
                "EnableCapture": True,
                "InitialSamplingPercentage": 25,
                "DestinationS3Uri": "s3://closedloop-test-capture/capture",
                "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
                "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"]},
            },
            "Tags": TAGS,
        },
    )
    assert Hosting(client, "closedloop-loans").ensure_endpoint_config(request) is True


@pytest.mark.parametrize(
    ("routing", "expected"),
    [
        (
            {"TRAFFIC_ROUTING": "CANARY", "CANARY_SIZE_PERCENT": "20"},
            {"Type": "CANARY", "WaitIntervalInSeconds": 300, "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 20}},
        ),
        (
            {"TRAFFIC_ROUTING": "LINEAR", "LINEAR_STEP_PERCENT": "25", "TRAFFIC_WAIT_SECONDS": "120"},
            {
                "Type": "LINEAR",
                "WaitIntervalInSeconds": 120,
                "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 25},
            },
        ),
        ({"TRAFFIC_ROUTING": "ALL_AT_ONCE"}, {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 300}),
    ],
)
def test_update_endpoint_request_carries_the_blue_green_policy(
    client: Any, stub: Stubber, routing: dict[str, str], expected: dict[str, Any]
) -> None:
    s = settings(**routing, TERMINATION_WAIT_SECONDS="900", MAX_EXECUTION_TIMEOUT_SECONDS="7200")
    config = endpoint_config_name(s, PACKAGE)
    request = build_update_endpoint_request(s, config, build_deployment_config(s, ["closedloop-loans-endpoint-5xx"]))
    stub.add_response(
        "update_endpoint",
        {"EndpointArn": f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:endpoint/closedloop-loans"},
        expected_params={
            "EndpointName": "closedloop-loans",
            "EndpointConfigName": config,
            "DeploymentConfig": {
                "BlueGreenUpdatePolicy": {
                    "TrafficRoutingConfiguration": expected,
                    "TerminationWaitInSeconds": 900,
                    "MaximumExecutionTimeoutInSeconds": 7200,
                },
                "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "closedloop-loans-endpoint-5xx"}]},
            },
        },
    )
    Hosting(client, "closedloop-loans").update_endpoint(request)


def test_deployment_config_defaults_to_every_configured_alarm_and_omits_rollback_without_alarms() -> None:
    s = settings()
    assert build_deployment_config(s)["AutoRollbackConfiguration"]["Alarms"] == [
        {"AlarmName": name} for name in ALARMS.split(",")
    ]
    assert "AutoRollbackConfiguration" not in build_deployment_config(s, [])


def test_create_endpoint_request(client: Any, stub: Stubber) -> None:
    s = settings()
    stub.add_response(
        "create_endpoint",
        {"EndpointArn": f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:endpoint/closedloop-loans"},
        expected_params={"EndpointName": "closedloop-loans", "EndpointConfigName": "cfg", "Tags": TAGS},
    )
    Hosting(client, "closedloop-loans").create_endpoint(
        build_create_endpoint_request(s, "cfg", tags=lineage_tags(PACKAGE, APPROVAL))
    )


def test_an_update_refused_while_another_runs_is_endpoint_busy(client: Any, stub: Stubber) -> None:
    stub.add_client_error(
        "update_endpoint",
        service_error_code="ValidationException",
        service_message=f'Cannot update in-progress endpoint "arn:aws:sagemaker:eu-west-1:{ACCOUNT}:endpoint/e".',
    )
    with pytest.raises(EndpointBusyError) as exc:
        Hosting(client, "closedloop-loans").update_endpoint(
            {"EndpointName": "closedloop-loans", "EndpointConfigName": "cfg"}
        )
    assert exc.value.retryable


def test_creating_what_exists_is_finding_it(client: Any, stub: Stubber) -> None:
    for operation, label in (("create_model", "model"), ("create_endpoint_config", "endpoint configuration")):
        stub.add_client_error(
            operation,
            service_error_code="ValidationException",
            service_message=f'Cannot create already existing {label} "arn:aws:sagemaker:eu-west-1:{ACCOUNT}:x/y".',
        )
    hosting = Hosting(client, "closedloop-loans")
    assert hosting.ensure_model({"ModelName": "m"}) is False
    variant = {"VariantName": "AllTraffic", "ModelName": "m", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
    assert hosting.ensure_endpoint_config({"EndpointConfigName": "c", "ProductionVariants": [variant]}) is False


def test_the_serving_version_is_read_from_the_config_lineage(client: Any, stub: Stubber) -> None:
    endpoint = Endpoint(
        name="closedloop-loans",
        arn=f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:endpoint/closedloop-loans",
        status="InService",
        config_name="closedloop-loans-v3-ABC",
    )
    stub.add_response(
        "list_tags",
        {"Tags": TAGS},
        expected_params={
            "ResourceArn": f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:endpoint-config/closedloop-loans-v3-abc",
            "MaxResults": 100,
        },
    )
    serving = Hosting(client, "closedloop-loans").serving(endpoint)
    assert serving is not None and (serving.model_package_arn, serving.version) == (PACKAGE_ARN, 3)


def test_missing_lineage_is_tagged_unknown_and_reported() -> None:
    bare = PACKAGE.model_copy(update={"metadata": {}, "generated_by": "arn:aws:sagemaker:pipeline/x/execution/y"})
    tags = {t["Key"]: t["Value"] for t in lineage_tags(bare, APPROVAL)}
    assert tags[lineage.PIPELINE_EXECUTION] == "arn:aws:sagemaker:pipeline/x/execution/y"
    assert tags[lineage.CODE_VERSION] == "unknown"
    assert bare.missing_lineage() == [lineage.PIPELINE_EXECUTION, lineage.PREPARED_MANIFEST, lineage.CODE_VERSION]


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"CANARY_SIZE_PERCENT": "60"}, "CANARY_SIZE_PERCENT"),
        ({"TRAFFIC_ROUTING": "LINEAR", "LINEAR_STEP_PERCENT": "5"}, "LINEAR_STEP_PERCENT"),
        ({"TRAFFIC_ROUTING": "LINEAR", "LINEAR_STEP_PERCENT": "60"}, "LINEAR_STEP_PERCENT"),
        (
            {"TRAFFIC_ROUTING": "LINEAR", "LINEAR_STEP_PERCENT": "10", "TRAFFIC_WAIT_SECONDS": "600"},
            "MAX_EXECUTION_TIMEOUT_SECONDS",
        ),
        ({"TERMINATION_WAIT_SECONDS": "3600", "MAX_EXECUTION_TIMEOUT_SECONDS": "3600"}, "MAX_EXECUTION_TIMEOUT"),
        ({"CAPTURE_BUCKET": ""}, "CAPTURE_BUCKET"),
        ({"ROLLBACK_ALARM_NAMES": ",".join(f"a{i}" for i in range(11))}, "ROLLBACK_ALARM_NAMES"),
    ],
)
def test_rollout_settings_sagemaker_would_reject_fail_at_cold_start(overrides: dict[str, str], problem: str) -> None:
    with pytest.raises(SettingsError, match=problem):
        validate_rollout_settings(settings(**overrides))


def test_the_default_rollout_settings_are_valid() -> None:
    validate_rollout_settings(settings())
    validate_rollout_settings(settings(TRAFFIC_ROUTING="LINEAR", LINEAR_STEP_PERCENT="25"))
