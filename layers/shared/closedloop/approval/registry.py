"""Adapter over the SageMaker Model Registry for the approval gate: read candidates, write the verdict."""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError
from pydantic import ConfigDict, Field

from closedloop import lineage
from closedloop.aws import aws_errors, is_not_found
from closedloop.model import Model

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

PACKAGE_ARN = re.compile(r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package/([^/]+)/(\d+)$")


class Candidate(Model):
    """A registered model version, as the registry describes it (what the gate needs of it)."""

    model_config = ConfigDict(frozen=True)

    arn: str
    group: str
    version: int
    approval_status: str
    approval_description: str = ""
    metadata: dict[str, str] = Field(default_factory=dict)
    evaluation_uri: str | None = None
    bias_uri: str | None = None
    bias_pre_training_uri: str | None = None
    explainability_uri: str | None = None
    created_at: datetime | None = None

    @property
    def execution_arn(self) -> str | None:
        return self.metadata.get(lineage.PIPELINE_EXECUTION)


def group_and_version(arn: str) -> tuple[str, int] | None:
    """(group, version) of a versioned model package ARN, or None for anything else."""
    match = PACKAGE_ARN.match(arn)
    return (match.group(1), int(match.group(2))) if match else None


class GateRegistry:
    """Reads a group's versions as the gate's candidates, and writes the gate's verdict on one."""

    def __init__(self, sagemaker: SageMakerClient) -> None:
        self._sagemaker = sagemaker

    def describe(self, arn: str) -> Candidate | None:
        """The version as the registry describes it now; None when it does not exist.

        Raises:
            AwsServiceError / ThrottledError: the registry could not be read.
        """
        try:
            with aws_errors("sagemaker:DescribeModelPackage", passthrough=is_not_found):
                described = self._sagemaker.describe_model_package(ModelPackageName=arn)
        except ClientError:
            return None
        group, version = group_and_version(arn) or ("", 0)
        metrics: Any = described.get("ModelMetrics") or {}
        bias = metrics.get("Bias") or {}
        return Candidate(
            arn=arn,
            group=str(described.get("ModelPackageGroupName") or group),
            version=int(described.get("ModelPackageVersion") or version),
            approval_status=str(described.get("ModelApprovalStatus") or ""),
            approval_description=str(described.get("ApprovalDescription") or ""),
            metadata=dict(described.get("CustomerMetadataProperties") or {}),
            evaluation_uri=(metrics.get("ModelQuality") or {}).get("Statistics", {}).get("S3Uri"),
            bias_uri=(bias.get("PostTrainingReport") or bias.get("Report") or {}).get("S3Uri"),
            bias_pre_training_uri=(bias.get("PreTrainingReport") or {}).get("S3Uri"),
            explainability_uri=((metrics.get("Explainability") or {}).get("Report") or {}).get("S3Uri"),
            created_at=described.get("CreationTime"),
        )

    def newest(self, group: str, *, limit: int, approved_only: bool = False) -> list[str]:
        """The ARNs of the group's `limit` newest versions (only Approved ones if asked), newest first.

        Raises:
            AwsServiceError / ThrottledError: the registry could not be read.
        """
        request: dict[str, Any] = {
            "ModelPackageGroupName": group,
            "SortBy": "CreationTime",
            "SortOrder": "Descending",
            "MaxResults": limit,
        }
        if approved_only:
            request["ModelApprovalStatus"] = "Approved"
        with aws_errors("sagemaker:ListModelPackages"):
            summaries = self._sagemaker.list_model_packages(**request).get("ModelPackageSummaryList", [])
        return [summary["ModelPackageArn"] for summary in summaries]

    def set_approval(self, arn: str, description: str, status: Literal["Approved", "Rejected"] | None = None) -> None:
        """Write the gate's `ApprovalDescription` on a version and, when given, its approval status.

        Raises:
            AwsServiceError / ThrottledError: the version could not be updated.
        """
        with aws_errors("sagemaker:UpdateModelPackage"):
            if status is None:
                self._sagemaker.update_model_package(ModelPackageArn=arn, ApprovalDescription=description)
            else:
                self._sagemaker.update_model_package(
                    ModelPackageArn=arn, ModelApprovalStatus=status, ApprovalDescription=description
                )
