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


def test_s3_eventbridge_events_have_aws_shape() -> None:
    import json

    from moto import mock_aws

    from closedloop.events.s3 import ObjectCreatedEvent

    moto_ext.install()
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        events = boto3.client("events", region_name=REGION)
        for bucket, versioned in (("versioned", True), ("plain", False)):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
            if versioned:
                s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
            s3.put_bucket_notification_configuration(
                Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
            )
        queue = sqs.create_queue(QueueName="q")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="r", EventPattern=json.dumps({"source": ["aws.s3"], "detail-type": ["Object Created"]}))
        events.put_targets(Rule="r", Targets=[{"Id": "q", "Arn": arn}])
        # When objects are uploaded
        put = s3.put_object(Bucket="versioned", Key="raw/loans/a.csv", Body=b"x,y\n")
        s3.put_object(Bucket="versioned", Key="raw/loans/a.csv", Body=b"x,y\n1,2\n")
        s3.put_object(Bucket="plain", Key="raw/loans/b.csv", Body=b"z\n")
        bodies = [
            json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
        ]
    # Then each is a real-format Object Created event
    parsed = [ObjectCreatedEvent.model_validate(body) for body in bodies]
    assert len({p.id for p in parsed}) == 3
    assert {p.detail.reason for p in parsed} == {"PutObject"}
    first = next(p for p in parsed if p.detail.object.version_id == put["VersionId"])
    assert first.detail.object.etag == put["ETag"].strip('"')
    plain = next(p for p in parsed if p.detail.bucket.name == "plain")
    assert (
        plain.detail.object.version_id is None
        and "version-id" not in bodies[[p.id for p in parsed].index(plain.id)]["detail"]["object"]
    )
    sequencers = [p.detail.object.sequencer for p in parsed]
    assert len(set(sequencers)) == 3
    assert all(body["account"] == "123456789012" for body in bodies)


def test_a_tls_only_bucket_policy_denies_only_insecure_requests() -> None:
    import json

    from moto import mock_aws
    from moto.iam.policy_conditions import TrustCondition

    moto_ext.install()
    # A condition on a key the request does not carry does not match (AWS semantics) …
    assert TrustCondition("Bool", ["false"], ["aws:SecureTransport"]).verify_condition([]) is False
    assert TrustCondition("BoolIfExists", ["false"], ["aws:SecureTransport"]).verify_condition([]) is True
    # … and one on a key it carries is evaluated
    assert TrustCondition("Bool", ["false"], ["aws:SecureTransport"]).verify_condition(["false"]) is True
    assert TrustCondition("Bool", ["false"], ["aws:SecureTransport"]).verify_condition(["true"]) is False
    assert TrustCondition("ArnLike", ["arn:aws:events:*:1:rule/s-*"], ["aws:SourceArn"]).verify_condition(
        ["arn:aws:events:eu-west-1:1:rule/s-Rule-1"]
    )
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="tls-only", CreateBucketConfiguration={"LocationConstraint": REGION})
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": ["arn:aws:s3:::tls-only", "arn:aws:s3:::tls-only/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
        s3.put_bucket_policy(Bucket="tls-only", Policy=json.dumps(policy))
        s3.put_object(Bucket="tls-only", Key="k", Body=b"ok")
        assert s3.get_object(Bucket="tls-only", Key="k")["Body"].read() == b"ok"


def test_jobs_run_until_the_runner_finishes_them() -> None:
    from moto import mock_aws

    from closedloop_ops.moto_ext import jobs

    moto_ext.install()
    with mock_aws():
        sm = boto3.client("sagemaker", region_name=REGION)
        sm.create_processing_job(
            ProcessingJobName="p1",
            RoleArn="arn:aws:iam::123456789012:role/r",
            AppSpecification={"ImageUri": "img"},
            ProcessingResources={
                "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 1}
            },
        )
        assert sm.describe_processing_job(ProcessingJobName="p1")["ProcessingJobStatus"] == "InProgress"
        jobs.finish_processing_job("123456789012", REGION, "p1", "Failed", "AlgorithmError: exit 1")
        described = sm.describe_processing_job(ProcessingJobName="p1")
        assert (described["ProcessingJobStatus"], described["FailureReason"]) == ("Failed", "AlgorithmError: exit 1")
        glue = boto3.client("glue", region_name=REGION)
        glue.create_job(Name="j", Role="r", Command={"Name": "pythonshell", "ScriptLocation": "s3://b/k.py"})
        run_id = glue.start_job_run(JobName="j")["JobRunId"]
        assert glue.get_job_run(JobName="j", RunId=run_id)["JobRun"]["JobRunState"] in {"STARTING", "RUNNING"}
        jobs.finish_glue_run("123456789012", REGION, "j", run_id, "SUCCEEDED")
        assert glue.get_job_run(JobName="j", RunId=run_id)["JobRun"]["JobRunState"] == "SUCCEEDED"


def test_package_listeners_hear_registrations_and_changes(sagemaker: object) -> None:
    from closedloop_ops.moto_ext import registry

    heard: list[tuple[str, str | None]] = []
    registry.on_package_change(
        lambda account, region, package: heard.append((package["ModelPackageArn"], package.get("ModelApprovalStatus")))
    )
    try:
        arn = register(sagemaker)
        sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")  # type: ignore[attr-defined]
    finally:
        registry.on_package_change(None)
    assert heard == [(arn, "PendingManualApproval"), (arn, "Approved")]
