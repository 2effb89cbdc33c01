"""The rollout routes' test world on moto: a model group, versions approved by real identities, the
rollback alarms, the approval queue and a subscriber that reads the notification topic."""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import pytest

from closedloop import lineage
from closedloop.ledger import Ledger, RecordedDecision
from closedloop.settings import load_settings
from closedloop_ops.moto_ext import hosting
from support.events import load_event, sqs_batch
from support.handlers import FakeLambdaContext, load_handler
from support.stack import ACCOUNT, REGION, Stack

GROUP = "closedloop-loans"
ENDPOINT = "closedloop-loans"
GATE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/closedloop-test-ApprovalGateFunctionRole-1AB2C3D4"
OFFICER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/ComplianceOfficer"
ALARMS = (
    "closedloop-loans-endpoint-5xx",
    "closedloop-loans-endpoint-latency",
    "closedloop-loans-drift-features",
    "closedloop-loans-drift-predictions",
    "closedloop-loans-drift-bias",
    "closedloop-loans-drift-attributions",
)
IMAGE = f"141502667606.dkr.ecr.{REGION}.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"


@contextlib.contextmanager
def shared_service_models() -> Iterator[None]:
    """Every botocore session of the block shares one loader, so a service model is read from disk once.

    Each handler load builds fresh sessions (its clients must see the test's environment); without
    this, each one parses SageMaker's multi-megabyte service model again. The data is the same.
    """
    original = botocore.session.create_loader
    botocore.session.create_loader = functools.cache(botocore.loaders.create_loader)  # type: ignore[assignment]
    try:
        yield
    finally:
        botocore.session.create_loader = original  # type: ignore[assignment]


@dataclass
class Rollout:
    """Handles on the rollout world of one test."""

    stack: Stack
    queue_url: str
    queue_arn: str
    dlq_url: str
    notifications_url: str
    deploy: Any = None
    record: Any = None
    versions: dict[int, str] = field(default_factory=dict)
    identities: dict[tuple[str, str], Any] = field(default_factory=dict)

    # -- clients ---------------------------------------------------------------------------------

    @cached_property
    def sm(self) -> Any:
        return boto3.client("sagemaker", region_name=REGION)

    @cached_property
    def sqs(self) -> Any:
        return boto3.client("sqs", region_name=REGION)

    @cached_property
    def ledger(self) -> Ledger:
        return Ledger(self.stack.settings.ledger_table, boto3.client("dynamodb", region_name=REGION))

    # -- the registry ------------------------------------------------------------------------------

    def register(self, group: str = GROUP) -> str:
        """Register a new version (PendingManualApproval, lineage metadata as the pipeline writes it)."""
        execution = (
            f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/closedloop-training/execution/{uuid.uuid4().hex[:12]}"
        )
        arn: str = self.sm.create_model_package(
            ModelPackageGroupName=group,
            InferenceSpecification={
                "Containers": [{"Image": IMAGE, "ModelDataUrl": "s3://closedloop-test-artifacts/model.tar.gz"}],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
            ModelApprovalStatus="PendingManualApproval",
            CustomerMetadataProperties={
                lineage.PIPELINE_EXECUTION: execution,
                lineage.PREPARED_MANIFEST: "s3://closedloop-test-data/prepared/loans/run1/manifest.json",
                lineage.CODE_VERSION: "4b8e2f1a9c3d7e60",
            },
        )["ModelPackageArn"]
        if group == GROUP:
            self.versions[int(arn.rsplit("/", 1)[1])] = arn
        return arn

    def set_status(self, arn: str, status: str, *, as_role: str = GATE_ROLE, session: str = "gate") -> None:
        """Change a version's status with the credentials of `as_role` (moto records them as LastModifiedBy)."""
        if (as_role, session) not in self.identities:
            creds = boto3.client("sts", region_name=REGION).assume_role(RoleArn=as_role, RoleSessionName=session)[
                "Credentials"
            ]
            self.identities[as_role, session] = boto3.client(
                "sagemaker",
                region_name=REGION,
                aws_access_key_id=creds["AccessKeyId"],
                aws_secret_access_key=creds["SecretAccessKey"],
                aws_session_token=creds["SessionToken"],
            )
        self.identities[as_role, session].update_model_package(ModelPackageArn=arn, ModelApprovalStatus=status)

    def approved(self) -> str:
        """A new version, approved by the gate."""
        arn = self.register()
        self.set_status(arn, "Approved")
        return arn

    def live(self) -> str:
        """A new version, approved, deployed and recorded live: the endpoint serves it."""
        arn = self.approved()
        self.deliver(self.event(arn))
        self.outcome()
        return arn

    def event(self, arn: str, *, event_id: str | None = None, **detail: Any) -> dict[str, Any]:
        """The registry's state change event for a version as it is now (shaped like the sample)."""
        described = self.sm.describe_model_package(ModelPackageName=arn)
        event = copy.deepcopy(load_event("model_package_approved"))
        event["id"] = event_id or str(uuid.uuid4())
        event["account"] = ACCOUNT
        event["region"] = REGION
        event["resources"] = [arn]
        body = event["detail"]
        body.update(
            ModelPackageArn=arn,
            ModelPackageGroupName=described["ModelPackageGroupName"],
            ModelPackageVersion=described["ModelPackageVersion"],
            ModelPackageName=f"{described['ModelPackageGroupName']}/{described['ModelPackageVersion']}",
            ModelApprovalStatus=described["ModelApprovalStatus"],
        )
        body.update(detail)
        return event

    # -- the queue -------------------------------------------------------------------------------------

    def deliver(self, *events: dict[str, Any]) -> dict[str, Any]:
        """Hand events to the deploy function as SQS records of the approval queue (fake receipts)."""
        if self.deploy is None:
            self.deploy = load_handler("deploy_model")
        result: dict[str, Any] = self.deploy.lambda_handler(
            sqs_batch(list(events), queue_arn=self.queue_arn), FakeLambdaContext()
        )
        return result

    def deliver_through_queue(self, event: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Send an event to the real (moto) queue, receive it and hand it over with its receipt handle."""
        sqs = self.sqs
        sqs.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(event))
        message = sqs.receive_message(QueueUrl=self.queue_url, AttributeNames=["All"], MaxNumberOfMessages=1)[
            "Messages"
        ][0]
        batch = sqs_batch([message["Body"]], queue_arn=self.queue_arn)
        record = batch["Records"][0]
        record.update(messageId=message["MessageId"], receiptHandle=message["ReceiptHandle"])
        record["attributes"]["ApproximateReceiveCount"] = message["Attributes"]["ApproximateReceiveCount"]
        if self.deploy is None:
            self.deploy = load_handler("deploy_model")
        return self.deploy.lambda_handler(batch, FakeLambdaContext()), message

    # -- route 5 -------------------------------------------------------------------------------------

    def endpoint_event(self, detail_type: str = "SageMaker Endpoint State Change", **detail: Any) -> dict[str, Any]:
        """An endpoint event for the endpoint as it is now (upper-case status, epoch-ms times)."""
        name = (
            "endpoint_state_change"
            if detail_type == "SageMaker Endpoint State Change"
            else ("endpoint_deployment_state_change")
        )
        event = copy.deepcopy(load_event(name))
        event["id"] = str(uuid.uuid4())
        described = self.sm.describe_endpoint(EndpointName=ENDPOINT)
        status = "".join(f"_{c}" if c.isupper() and i else c for i, c in enumerate(described["EndpointStatus"]))
        event["account"] = ACCOUNT
        event["region"] = REGION
        event["resources"] = [described["EndpointArn"]]
        event["detail"].update(
            EndpointArn=described["EndpointArn"],
            EndpointConfigName=described["EndpointConfigName"],
            EndpointStatus=status.upper(),
        )
        event["detail"].pop("PendingDeploymentSummary", None)
        event["detail"].update(detail)
        return event

    def outcome(self, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if self.record is None:
            self.record = load_handler("record_deployment")
        result: dict[str, Any] = self.record.lambda_handler(event or self.endpoint_event(), FakeLambdaContext())
        return result

    # -- what happened --------------------------------------------------------------------------------

    def endpoint(self) -> dict[str, Any]:
        described: dict[str, Any] = self.sm.describe_endpoint(EndpointName=ENDPOINT)
        return described

    def serving_version(self) -> int:
        config = self.endpoint()["EndpointConfigName"]
        arn = self.endpoint()["EndpointArn"].replace(f":endpoint/{ENDPOINT}", f":endpoint-config/{config}")
        tags = {t["Key"]: t["Value"] for t in self.sm.list_tags(ResourceArn=arn)["Tags"]}
        return int(tags[lineage.MODEL_VERSION])

    def package_tags(self, version: int) -> dict[str, str]:
        return {t["Key"]: t["Value"] for t in self.sm.list_tags(ResourceArn=self.versions[version])["Tags"]}

    def decisions(self, version: int | str) -> list[RecordedDecision]:
        key = self.versions[version] if isinstance(version, int) else version
        return self.ledger.decisions_for(key)

    def state(self) -> dict[str, Any]:
        return self.ledger.get_state(f"endpoint#{ENDPOINT}") or {}

    def notifications(self) -> list[dict[str, Any]]:
        """Every notification published so far (drained from the subscribed queue)."""
        sqs = self.sqs
        found: list[dict[str, Any]] = []
        while True:
            messages = sqs.receive_message(QueueUrl=self.notifications_url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return found
            for message in messages:
                envelope = json.loads(message["Body"])
                found.append({"subject": envelope.get("Subject", ""), **json.loads(envelope["Message"])})
                sqs.delete_message(QueueUrl=self.notifications_url, ReceiptHandle=message["ReceiptHandle"])

    def models(self) -> list[str]:
        return sorted(m["ModelName"] for m in self.sm.list_models()["Models"])

    def endpoint_configs(self) -> list[str]:
        return sorted(c["EndpointConfigName"] for c in self.sm.list_endpoint_configs()["EndpointConfigs"])

    def hold_next_update(self) -> None:
        hosting.hold_next_update(ACCOUNT, REGION, ENDPOINT)

    def fail_next_update(self, reason: str = "") -> None:
        hosting.fail_next_update(ACCOUNT, REGION, ENDPOINT, reason)

    def set_endpoint_status(self, status: str, reason: str = "") -> None:
        hosting.set_endpoint_status(ACCOUNT, REGION, ENDPOINT, status, reason)


def provision_rollout(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, *, mode: str = "auto", alarms: tuple[str, ...] = ALARMS[:2]
) -> Rollout:
    """The rollout's resources in the stack's moto: group, alarms, queue + DLQ, a topic subscriber."""
    for name, value in {
        "APPROVAL_MODE": mode,
        "APPROVAL_GATE_ROLE_ARN": GATE_ROLE,
        "ROLLBACK_ALARM_NAMES": ",".join(ALARMS),
    }.items():
        monkeypatch.setenv(name, value)
    load_settings.cache_clear()
    boto3.client("sagemaker", region_name=REGION).create_model_package_group(ModelPackageGroupName=GROUP)
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    for name in alarms:
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            Namespace="AWS/SageMaker",
            MetricName="Invocation5XXErrors",
            Dimensions=[{"Name": "EndpointName", "Value": ENDPOINT}, {"Name": "VariantName", "Value": "AllTraffic"}],
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
        )
    sqs = boto3.client("sqs", region_name=REGION)

    def queue(name: str, **attributes: str) -> tuple[str, str]:
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return url, arn

    dlq_url, dlq_arn = queue("closedloop-test-DeployModelDlq")
    queue_url, queue_arn = queue(
        "closedloop-test-DeployModelQueue",
        VisibilityTimeout="720",
        RedrivePolicy=json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "60"}),
    )
    notifications_url, notifications_arn = queue("closedloop-test-notifications-reader")
    boto3.client("sns", region_name=REGION).subscribe(
        TopicArn=stack.settings.notification_topic_arn, Protocol="sqs", Endpoint=notifications_arn
    )
    return Rollout(
        stack=stack, queue_url=queue_url, queue_arn=queue_arn, dlq_url=dlq_url, notifications_url=notifications_url
    )
