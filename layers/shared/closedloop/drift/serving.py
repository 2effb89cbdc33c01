"""Adapter over SageMaker for the drift monitor: what the stack's endpoint serves.

The endpoint (its status, config and data capture), the model package its config names by the
`closedloop:model-package` tag, and the evidence files that package points to. A missing
endpoint is None; every other failure is translated (`aws_errors`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from pydantic import ConfigDict

from closedloop import lineage
from closedloop.aws import aws_errors, is_not_found
from closedloop.model import Model

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient


class ServingEndpoint(Model):
    """The endpoint as DescribeEndpoint says it is now (the fields the drift monitor uses)."""

    model_config = ConfigDict(frozen=True)

    status: str
    config_name: str
    capture_enabled: bool  # no DataCaptureConfig at all counts as enabled: the settings say where it goes
    capture_destination: str | None = None
    serving_since: datetime | None = None

    @classmethod
    def from_description(cls, described: Mapping[str, Any]) -> ServingEndpoint:
        """Build from a DescribeEndpoint response."""
        capture = described.get("DataCaptureConfig") or {}
        return cls(
            status=described["EndpointStatus"],
            config_name=described["EndpointConfigName"],
            capture_enabled=not capture or bool(capture.get("EnableCapture", True)),
            capture_destination=capture.get("DestinationS3Uri"),
            serving_since=described.get("LastModifiedTime"),
        )


class PackageEvidence(Model):
    """Where a model package's drift baseline, post-training bias report and explainability baseline
    (Clarify's `analysis.json` and the analysis configuration that made it) are; any may be absent."""

    model_config = ConfigDict(frozen=True)

    baseline_uri: str | None = None
    bias_report_uri: str | None = None
    explainability_uri: str | None = None
    explainability_config_uri: str | None = None


class Serving:
    """Reads what one endpoint (the stack's) serves, and the evidence of the model package behind it."""

    def __init__(self, sagemaker: SageMakerClient, endpoint_name: str) -> None:
        self._sagemaker = sagemaker
        self.endpoint_name = endpoint_name

    def endpoint(self) -> ServingEndpoint | None:
        """The endpoint now; None when it does not exist.

        Raises:
            AwsServiceError / ThrottledError: SageMaker could not be read.
        """
        try:
            with aws_errors("sagemaker:DescribeEndpoint", passthrough=is_not_found):
                described = self._sagemaker.describe_endpoint(EndpointName=self.endpoint_name)
        except ClientError:
            return None
        return ServingEndpoint.from_description(described)

    def tagged_package(self, config_name: str) -> str | None:
        """The model package ARN an endpoint config names in its lineage tag; None without one.

        Raises:
            AwsServiceError / ThrottledError: SageMaker could not be read.
        """
        with aws_errors("sagemaker:DescribeEndpointConfig"):
            config_arn = self._sagemaker.describe_endpoint_config(EndpointConfigName=config_name)["EndpointConfigArn"]
        with aws_errors("sagemaker:ListTags"):
            tags = self._sagemaker.list_tags(ResourceArn=config_arn, MaxResults=100).get("Tags", [])
        value = next((t["Value"] for t in tags if t["Key"] == lineage.MODEL_PACKAGE), None)
        return value if value and value.startswith("arn:") else None

    def evidence(self, package_arn: str) -> PackageEvidence:
        """The model package's `DriftCheckBaselines` statistics and `ModelMetrics` bias report locations.

        Raises:
            AwsServiceError / ThrottledError: the registry could not be read.
        """
        with aws_errors("sagemaker:DescribeModelPackage"):
            package = self._sagemaker.describe_model_package(ModelPackageName=package_arn)
        checks = package.get("DriftCheckBaselines", {})
        baseline = checks.get("ModelDataQuality", {}).get("Statistics", {})
        bias = package.get("ModelMetrics", {}).get("Bias", {}).get("PostTrainingReport", {})
        # the version's explainability drift-check baseline: SageMaker's explainability monitor
        # compares with `Constraints` (Clarify's analysis.json) and reuses `ConfigFile`'s settings
        explainability = checks.get("Explainability", {})
        return PackageEvidence(
            baseline_uri=baseline.get("S3Uri"),
            bias_report_uri=bias.get("S3Uri"),
            explainability_uri=explainability.get("Constraints", {}).get("S3Uri"),
            explainability_config_uri=explainability.get("ConfigFile", {}).get("S3Uri"),
        )

    def served_model(self, config_name: str) -> str | None:
        """The SageMaker Model the endpoint config's (first) production variant serves; None without one.

        Raises:
            AwsServiceError / ThrottledError: SageMaker could not be read.
        """
        with aws_errors("sagemaker:DescribeEndpointConfig"):
            variants = self._sagemaker.describe_endpoint_config(EndpointConfigName=config_name)["ProductionVariants"]
        names = [str(v["ModelName"]) for v in variants if v.get("ModelName")]
        return names[0] if names else None
