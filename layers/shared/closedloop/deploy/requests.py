"""Pure builders of the exact SageMaker payloads the rollout sends (asserted in unit tests without I/O).

Names are deterministic: a model is named after the package version and the role it runs as, an
endpoint config after the model and every setting that shapes it. Deploying the same version with
the same settings again (a retry, a rollback to it) finds the resources it created before instead
of creating copies; changing a setting produces a new config, and so a real rollout.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

from closedloop import lineage
from closedloop.deploy.models import ModelPackage
from closedloop.errors import SettingsError
from closedloop.settings import Settings

VARIANT_NAME = "AllTraffic"  # blue/green needs the same variant name in the old and new config
CSV = "text/csv"
MAX_NAME = 63
MAX_ROLLBACK_ALARMS = 10  # AutoRollbackConfig.Alarms holds at most ten
MAX_CANARY_PERCENT = 50  # "less than or equal to 50% of the variant's total instance count"
LINEAR_STEP_PERCENT = (10, 50)  # "10-50% of the variant's total instance count"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:8]


def resource_name(endpoint_name: str, version: int, digest: str) -> str:
    """`<endpoint>-v<version>-<digest>`: at most 63 characters, matching `<prefix>-*` IAM scopes."""
    suffix = f"-v{version}-{digest}"
    return endpoint_name[: MAX_NAME - len(suffix)].rstrip("-") + suffix


def model_name(settings: Settings, package: ModelPackage) -> str:
    return resource_name(
        settings.endpoint_name, package.version, _digest(package.arn, settings.model_execution_role_arn)
    )


def capture_uri(settings: Settings) -> str:
    """Where SageMaker writes data capture (it appends `<endpoint>/<variant>/yyyy/mm/dd/hh/`)."""
    return f"s3://{settings.capture_bucket}/{settings.capture_prefix.strip('/')}"


def endpoint_config_name(settings: Settings, package: ModelPackage) -> str:
    shape = (
        model_name(settings, package),
        settings.endpoint_instance_type,
        str(settings.endpoint_instance_count),
        capture_uri(settings),
        str(settings.capture_sampling_percent),
    )
    return resource_name(settings.endpoint_name, package.version, _digest(*shape))


def approval_tag(mode: str, identity: str) -> str:
    """The approval decision behind a deployment: how it was verified and who made it."""
    return f"{mode}:{identity or 'unknown'}"


def lineage_tags(package: ModelPackage, approval: str) -> list[dict[str, str]]:
    """The lineage every resource the rollout creates carries (contract: drift monitor, CLI)."""
    values = {
        lineage.MODEL_PACKAGE: package.arn,
        lineage.MODEL_VERSION: str(package.version),
        lineage.PIPELINE_EXECUTION: package.pipeline_execution,
        lineage.PREPARED_MANIFEST: package.prepared_manifest,
        lineage.CODE_VERSION: package.code_version,
        lineage.APPROVAL: approval,
    }
    return [{"Key": key, "Value": lineage.tag_value(value)} for key, value in values.items()]


def build_create_model_request(
    settings: Settings, package: ModelPackage, *, tags: list[dict[str, str]]
) -> dict[str, Any]:
    """CreateModel from exactly this package version, run as the stack's model execution role."""
    return {
        "ModelName": model_name(settings, package),
        "PrimaryContainer": {"ModelPackageName": package.arn},
        "ExecutionRoleArn": settings.model_execution_role_arn,
        "Tags": tags,
    }


def build_endpoint_config_request(
    settings: Settings, package: ModelPackage, *, tags: list[dict[str, str]]
) -> dict[str, Any]:
    """CreateEndpointConfig: one variant, and data capture of requests and responses as CSV."""
    return {
        "EndpointConfigName": endpoint_config_name(settings, package),
        "ProductionVariants": [
            {
                "VariantName": VARIANT_NAME,
                "ModelName": model_name(settings, package),
                "InstanceType": settings.endpoint_instance_type,
                "InitialInstanceCount": settings.endpoint_instance_count,
                "InitialVariantWeight": 1.0,
            }
        ],
        "DataCaptureConfig": {
            "EnableCapture": True,
            "InitialSamplingPercentage": settings.capture_sampling_percent,
            "DestinationS3Uri": capture_uri(settings),
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"CsvContentTypes": [CSV]},
        },
        "Tags": tags,
    }


def build_deployment_config(settings: Settings, alarm_names: Sequence[str] | None = None) -> dict[str, Any]:
    """The blue/green policy of an UpdateEndpoint: traffic shifting, bake time, auto-rollback alarms.

    `alarm_names` defaults to the configured rollback alarms (the caller passes the ones that exist).
    """
    routing: dict[str, Any] = {"Type": settings.traffic_routing, "WaitIntervalInSeconds": settings.traffic_wait_s}
    if settings.traffic_routing == "CANARY":
        routing["CanarySize"] = {"Type": "CAPACITY_PERCENT", "Value": settings.canary_size_percent}
    elif settings.traffic_routing == "LINEAR":
        routing["LinearStepSize"] = {"Type": "CAPACITY_PERCENT", "Value": settings.linear_step_percent}
    config: dict[str, Any] = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": settings.termination_wait_s,
            "MaximumExecutionTimeoutInSeconds": settings.max_execution_timeout_s,
        }
    }
    names = list(settings.rollback_alarm_names if alarm_names is None else alarm_names)
    if names:
        config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": name} for name in names]}
    return config


def build_update_endpoint_request(
    settings: Settings, config_name: str, deployment_config: dict[str, Any]
) -> dict[str, Any]:
    """UpdateEndpoint to a new config under the blue/green deployment config."""
    return {
        "EndpointName": settings.endpoint_name,
        "EndpointConfigName": config_name,
        "DeploymentConfig": deployment_config,
    }


def build_create_endpoint_request(
    settings: Settings, config_name: str, *, tags: list[dict[str, str]]
) -> dict[str, Any]:
    """CreateEndpoint (the first deployment: there is no old fleet to shift traffic from)."""
    return {"EndpointName": settings.endpoint_name, "EndpointConfigName": config_name, "Tags": tags}


def traffic_waits(settings: Settings) -> int:
    """How many `WaitIntervalInSeconds` a rollout waits through (between traffic steps)."""
    if settings.traffic_routing == "CANARY":
        return 1
    if settings.traffic_routing == "LINEAR":
        return math.ceil(100 / settings.linear_step_percent) - 1
    return 0


def validate_rollout_settings(settings: Settings) -> None:
    """Check the rollout parameters against SageMaker's limits before any approval depends on them.

    Raises:
        SettingsError: every problem found, named by its environment variable.
    """
    problems = []
    if settings.traffic_routing == "CANARY" and settings.canary_size_percent > MAX_CANARY_PERCENT:
        problems.append(f"CANARY_SIZE_PERCENT: a canary may be at most {MAX_CANARY_PERCENT}% of the fleet")
    low, high = LINEAR_STEP_PERCENT
    if settings.traffic_routing == "LINEAR" and not low <= settings.linear_step_percent <= high:
        problems.append(f"LINEAR_STEP_PERCENT: a linear step must be {low}-{high}% of the fleet")
    waiting = traffic_waits(settings) * settings.traffic_wait_s + settings.termination_wait_s
    if settings.max_execution_timeout_s <= waiting:
        problems.append(
            f"MAX_EXECUTION_TIMEOUT_SECONDS: must exceed the rollout's waiting time ({waiting} s of traffic "
            "waits and termination wait), or every rollout times out"
        )
    if len(settings.rollback_alarm_names) > MAX_ROLLBACK_ALARMS:
        problems.append(f"ROLLBACK_ALARM_NAMES: at most {MAX_ROLLBACK_ALARMS} alarms")
    for name, value in (
        ("MODEL_EXECUTION_ROLE_ARN", settings.model_execution_role_arn),
        ("CAPTURE_BUCKET", settings.capture_bucket),
    ):
        if not value:
            problems.append(f"{name}: required by the rollout")
    if problems:
        raise SettingsError("invalid rollout configuration: " + "; ".join(problems))
