"""Pins each moto extension to the AWS behaviour it reproduces (closedloop_ops.moto_ext)."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest

from closedloop_ops import moto_ext
from support.stack import REGION


@pytest.fixture
def sagemaker() -> Iterator[object]:
    from moto import mock_aws

    moto_ext.install()
    with mock_aws():
        yield boto3.client("sagemaker", region_name=REGION)


def register(sm: object, group: str = "models") -> str:
    sm.create_model_package_group(ModelPackageGroupName=group)  # type: ignore[attr-defined]
    return sm.create_model_package(  # type: ignore[attr-defined,no-any-return]
        ModelPackageGroupName=group,
        InferenceSpecification={
            "Containers": [{"Image": "img", "ModelDataUrl": "s3://b/model.tar.gz"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        ModelApprovalStatus="PendingManualApproval",
        CustomerMetadataProperties={"closedloop:pipeline-execution": "arn:exec/1"},
    )["ModelPackageArn"]


def test_update_model_package_leaves_omitted_fields_alone(sagemaker: object) -> None:
    arn = register(sagemaker)
    sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved", ApprovalDescription="policy v1")  # type: ignore[attr-defined]
    described = sagemaker.describe_model_package(ModelPackageName=arn)  # type: ignore[attr-defined]
    assert described["ModelApprovalStatus"] == "Approved"
    assert described["ApprovalDescription"] == "policy v1"
    assert described["CustomerMetadataProperties"] == {"closedloop:pipeline-execution": "arn:exec/1"}
    # metadata updates merge, and removals remove
    sagemaker.update_model_package(ModelPackageArn=arn, CustomerMetadataProperties={"x": "1"})  # type: ignore[attr-defined]
    sagemaker.update_model_package(
        ModelPackageArn=arn, CustomerMetadataPropertiesToRemove=["closedloop:pipeline-execution"]
    )  # type: ignore[attr-defined]
    described = sagemaker.describe_model_package(ModelPackageName=arn)  # type: ignore[attr-defined]
    assert described["CustomerMetadataProperties"] == {"x": "1"}
    assert described["ModelApprovalStatus"] == "Approved"


def test_last_modified_by_is_the_caller(sagemaker: object) -> None:
    arn = register(sagemaker)
    # Given a compliance officer's assumed-role credentials
    creds = boto3.client("sts", region_name=REGION).assume_role(
        RoleArn="arn:aws:iam::123456789012:role/ComplianceOfficer", RoleSessionName="jane"
    )["Credentials"]
    officer = boto3.client(
        "sagemaker",
        region_name=REGION,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    # When they approve
    officer.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
    # Then LastModifiedBy names their assumed role
    identity = sagemaker.describe_model_package(ModelPackageName=arn)["LastModifiedBy"]["IamIdentity"]  # type: ignore[attr-defined]
    assert identity["Arn"] == "arn:aws:sts::123456789012:assumed-role/ComplianceOfficer/jane"


def test_versioned_model_package_arns_can_be_tagged(sagemaker: object) -> None:
    arn = register(sagemaker)
    assert arn.endswith("model-package/models/1")
    sagemaker.add_tags(ResourceArn=arn, Tags=[{"Key": "closedloop:deployment-outcome", "Value": "live"}])  # type: ignore[attr-defined]
    tags = sagemaker.list_tags(ResourceArn=arn)["Tags"]  # type: ignore[attr-defined]
    assert {"Key": "closedloop:deployment-outcome", "Value": "live"} in tags
    sagemaker.delete_tags(ResourceArn=arn, TagKeys=["closedloop:deployment-outcome"])  # type: ignore[attr-defined]
    assert sagemaker.list_tags(ResourceArn=arn)["Tags"] == []  # type: ignore[attr-defined]
