"""Adapter over the SageMaker Model Registry for the rollout: read versions, tag their outcome."""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from closedloop import lineage
from closedloop.aws import aws_errors, is_not_found
from closedloop.deploy.models import ModelPackage

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

ROLLBACK_CANDIDATES = 25  # the newest approved versions looked at when the live one is rejected


class Registry:
    """Reads model package versions and writes their deployment outcome tag."""

    def __init__(self, sagemaker: SageMakerClient) -> None:
        self._sagemaker = sagemaker

    def describe(self, arn: str) -> ModelPackage | None:
        """The version as the registry describes it now; None when it no longer exists.

        Raises:
            AwsServiceError / ThrottledError: the registry could not be read.
        """
        try:
            with aws_errors("sagemaker:DescribeModelPackage", passthrough=is_not_found):
                described = self._sagemaker.describe_model_package(ModelPackageName=arn)
        except ClientError:
            return None
        return ModelPackage.from_description(described)

    def approved_versions(self, group: str, *, limit: int = ROLLBACK_CANDIDATES) -> list[ModelPackage]:
        """The newest `limit` approved versions of a group, described (approver included), newest first.

        Raises:
            AwsServiceError / ThrottledError: the registry could not be read.
        """
        arns: list[str] = []
        paginator = self._sagemaker.get_paginator("list_model_packages")
        with aws_errors("sagemaker:ListModelPackages"):
            for page in paginator.paginate(
                ModelPackageGroupName=group,
                ModelApprovalStatus="Approved",
                SortBy="CreationTime",
                SortOrder="Descending",
            ):
                arns.extend(summary["ModelPackageArn"] for summary in page.get("ModelPackageSummaryList", []))
                if len(arns) >= limit:
                    break
        described = (self.describe(arn) for arn in arns[:limit])
        return sorted((p for p in described if p is not None), key=lambda p: p.version, reverse=True)

    def tag_outcome(self, arn: str, outcome: str) -> None:
        """Tag a version with its latest deployment outcome (`lineage.DEPLOYMENT_OUTCOME`).

        Raises:
            AwsServiceError / ThrottledError: the tag could not be written.
        """
        with aws_errors("sagemaker:AddTags(model-package)"):
            self._sagemaker.add_tags(ResourceArn=arn, Tags=[{"Key": lineage.DEPLOYMENT_OUTCOME, "Value": outcome}])
