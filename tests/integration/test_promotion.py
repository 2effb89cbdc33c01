"""Route 8 across accounts on moto: promotion into a stage, the build account's record, refusals.

Three accounts in one moto: the build account (moto's default, stage `dev`), staging and prod, each
reached with credentials from `sts.assume_role` (moto keeps accounts apart by credentials). The
model group's resource policy in the build account names the stage accounts; `moto_ext.accounts`
makes moto honour it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from closedloop import aws, lineage
from closedloop.events.stage import StageChangeEvent
from closedloop.ledger import Ledger
from closedloop.line import PerLine
from closedloop.notify import Notifier
from closedloop.promotion.service import StageChanges
from closedloop.settings import Settings
from closedloop.stages import StageEvents
from closedloop_ops import moto_ext
from closedloop_ops.moto_ext import accounts
from closedloop_ops.stackref import sts_credentials
from support.stack import ACCOUNT as DEV
from support.stack import REGION, create_ledger_table, stack_env

STAGING, PROD, STRANGER = "222222222222", "333333333333", "444444444444"
GROUP = "closedloop-loans"
IMAGE = f"141502667606.dkr.ecr.{REGION}.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"


def credentials(account: str) -> dict[str, str]:
    """Keyword arguments for boto3 clients of `account` (credentials moto maps to it)."""
    issued = boto3.client("sts", region_name=REGION).assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole", RoleSessionName="tests"
    )["Credentials"]
    return {**sts_credentials(issued), "region_name": REGION}


@dataclass
class StageStack:
    account: str
    settings: Settings
    clients: dict[str, Any]
    ledger: Ledger

    def service(self) -> StageChanges:
        events = StageEvents(self.clients["events"])
        notifier = Notifier(self.settings.notification_topic_arn, self.clients["sns"])
        lines = PerLine(
            self.settings,
            lambda s: StageChanges(
                settings=s,
                sagemaker=self.clients["sagemaker"],
                ledger=self.ledger,
                notifier=notifier,
                stage_events=events,
            ),
        )
        return lines["loans"]

    def packages(self) -> list[dict[str, Any]]:
        sm = self.clients["sagemaker"]
        summaries = sm.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]
        return [sm.describe_model_package(ModelPackageName=s["ModelPackageArn"]) for s in summaries]


def make_stage(account: str, **settings: str) -> StageStack:
    kwargs = credentials(account) if account != DEV else {"region_name": REGION}
    clients = {name: boto3.client(name, **kwargs) for name in ("sagemaker", "dynamodb", "sns", "events")}
    env = {
        **stack_env(),
        "CLOSEDLOOP_ACCOUNT_ID": account,
        "NOTIFICATION_TOPIC_ARN": f"arn:aws:sns:{REGION}:{account}:closedloop-test-notifications",
        **settings,
    }
    create_ledger_table(clients["dynamodb"], env["LEDGER_TABLE"])
    clients["sns"].create_topic(Name="closedloop-test-notifications")
    clients["sagemaker"].create_model_package_group(ModelPackageGroupName=GROUP)
    return StageStack(account, Settings.from_environ(env), clients, Ledger(env["LEDGER_TABLE"], clients["dynamodb"]))


@pytest.fixture
def estate() -> Iterator[dict[str, StageStack]]:
    moto_ext.install()
    with mock_aws():
        aws.reset_clients()
        accounts.reset()
        dev = make_stage(DEV, STAGE="dev", STAGE_ACCOUNT_IDS=f"{STAGING},{PROD}")
        share(dev, [STAGING, PROD])
        staging = make_stage(
            STAGING, STAGE="staging", BUILD_ACCOUNT_ID=DEV, PROMOTE_FROM_ACCOUNT_ID=DEV, APPROVAL_MODE="auto"
        )
        prod = make_stage(
            PROD,
            STAGE="prod",
            BUILD_ACCOUNT_ID=DEV,
            PROMOTE_FROM_ACCOUNT_ID=STAGING,
            APPROVAL_MODE="manual",
            APPROVERS=f"arn:aws:iam::{PROD}:role/ProdApprover",
        )
        yield {"dev": dev, "staging": staging, "prod": prod}
        accounts.reset()


def share(dev: StageStack, with_accounts: list[str]) -> None:
    """The model group's resource policy the template writes (`ModelPackageGroupPolicy`)."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "StagesReadTheVersions",
                "Effect": "Allow",
                "Principal": {"AWS": with_accounts},
                "Action": ["sagemaker:DescribeModelPackage", "sagemaker:DescribeModelPackageGroup"],
                "Resource": [
                    f"arn:aws:sagemaker:{REGION}:{DEV}:model-package-group/{GROUP}",
                    f"arn:aws:sagemaker:{REGION}:{DEV}:model-package/{GROUP}/*",
                ],
            }
        ],
    }
    dev.clients["sagemaker"].put_model_package_group_policy(
        ModelPackageGroupName=GROUP, ResourcePolicy=json.dumps(policy)
    )


def register(dev: StageStack, status: str = "Approved") -> str:
    """A version trained in the build account, with its lineage."""
    return str(
        dev.clients["sagemaker"].create_model_package(
            ModelPackageGroupName=GROUP,
            ModelApprovalStatus=status,
            InferenceSpecification={
                "Containers": [
                    {"Image": IMAGE, "ModelDataUrl": "s3://closedloop-test-artifacts/pipelines/model.tar.gz"}
                ],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
            CustomerMetadataProperties={lineage.PIPELINE_EXECUTION: "arn:aws:sagemaker:x:1:pipeline/p/execution/e"},
        )["ModelPackageArn"]
    )


def live_event(sender: str, stage: str, source_arn: str, stage_arn: str | None = None) -> StageChangeEvent:
    return StageChangeEvent.model_validate(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Model Version Stage Change",
            "source": "closedloop",
            "account": sender,
            "time": datetime.now(UTC).isoformat(),
            "region": REGION,
            "resources": [source_arn],
            "detail": {
                "line": "loans",
                "stage": stage,
                "change": "live",
                "model_package_arn": stage_arn or source_arn,
                "source_model_package_arn": source_arn,
                "source_version": int(source_arn.rsplit("/", 1)[1]),
                "approval": "auto:arn:aws:sts::123456789012:assumed-role/gate/x",
                "reason": "the deployment completed",
            },
        }
    )


def test_a_version_live_in_dev_is_copied_into_staging_and_approved_by_the_stage_policy(
    estate: dict[str, StageStack],
) -> None:
    # Given version 1 approved in the build account and live on its dev endpoint
    source = register(estate["dev"])
    # When staging's route 8 receives dev's `live` change
    outcome = estate["staging"].service().handle(live_event(DEV, "dev", source))
    # Then staging registered its own copy, naming the source, and approved it by the stage policy
    assert outcome.result == "promoted", outcome.reason
    (copy,) = estate["staging"].packages()
    assert copy["ModelPackageArn"] == outcome.model_package_arn and copy["ModelPackageArn"].split(":")[4] == STAGING
    assert copy["ModelApprovalStatus"] == "Approved"
    assert copy["CustomerMetadataProperties"][lineage.SOURCE_PACKAGE] == source
    assert copy["CustomerMetadataProperties"][lineage.SOURCE_ACCOUNT] == DEV
    assert copy["CustomerMetadataProperties"][lineage.PIPELINE_EXECUTION].endswith("execution/e")  # lineage kept
    assert copy["InferenceSpecification"]["Containers"][0]["ModelDataUrl"].startswith("s3://closedloop-test-artifacts/")
    assert "stage-promotion/1" in copy["ApprovalDescription"]
    # And the ledger says why, under the source version
    (decision,) = estate["staging"].ledger.decisions_for(source)
    assert (decision.route, decision.action, decision.result) == ("stage-change", "promote", "promoted")
    # And the same change delivered again registers nothing more
    again = estate["staging"].service().handle(live_event(DEV, "dev", source))
    assert again.result == "promoted" and again.model_package_arn == outcome.model_package_arn
    assert len(estate["staging"].packages()) == 1


def test_prod_waits_for_its_approver(estate: dict[str, StageStack]) -> None:
    # Given version 1, promoted into staging and live there
    source = register(estate["dev"])
    staging_copy = estate["staging"].service().handle(live_event(DEV, "dev", source)).model_package_arn
    # When prod's route 8 receives staging's `live` change
    outcome = estate["prod"].service().handle(live_event(STAGING, "staging", source, staging_copy))
    # Then prod's copy waits for an approver (manual mode): nothing approved it
    assert outcome.result == "pending_approval"
    (copy,) = estate["prod"].packages()
    assert copy["ModelApprovalStatus"] == "PendingManualApproval"
    assert copy["CustomerMetadataProperties"][lineage.PROMOTED_FROM] == f"staging:{staging_copy}"


@pytest.mark.parametrize(
    ("stage", "sender", "why"),
    [
        ("staging", STRANGER, "not the stage this stack promotes from"),
        ("prod", DEV, "not the stage this stack promotes from"),  # prod takes versions from staging only
        ("dev", STRANGER, "not one of this stack's stage accounts"),
    ],
)
def test_a_stage_change_from_an_unlisted_account_is_refused(
    estate: dict[str, StageStack], stage: str, sender: str, why: str
) -> None:
    # Given a version of the build account
    source = register(estate["dev"])
    before = len(estate[stage].packages())
    # When a stage change arrives from an account the stack does not list
    outcome = estate[stage].service().handle(live_event(sender, "dev", source, source.replace(DEV, sender)))
    # Then it is refused, recorded, and nothing is registered
    assert outcome.result == "refused" and why in outcome.reason
    assert len(estate[stage].packages()) == before
    refusals = estate[stage].ledger.decisions_for(f"stage-change:{sender}:{source}")
    assert [(d.action, d.result) for d in refusals] == [("verify_sender", "refused")]


def test_a_version_the_group_policy_does_not_share_is_refused(estate: dict[str, StageStack]) -> None:
    # Given the build account shares its group with prod only
    source = register(estate["dev"])
    share(estate["dev"], [PROD])
    # When staging is told the version is live in dev
    outcome = estate["staging"].service().handle(live_event(DEV, "dev", source))
    # Then staging cannot read it and promotes nothing
    assert outcome.result == "refused" and "not shared" in outcome.reason
    assert estate["staging"].packages() == []


def test_an_older_or_no_longer_approved_version_is_not_promoted(estate: dict[str, StageStack]) -> None:
    # Given versions 1 and 2, version 2 promoted first (events out of order)
    first, second = register(estate["dev"]), register(estate["dev"])
    assert estate["staging"].service().handle(live_event(DEV, "dev", second)).result == "promoted"
    # Then version 1 arriving later is skipped as older
    older = estate["staging"].service().handle(live_event(DEV, "dev", first))
    assert older.result == "skipped" and "not newer" in older.reason
    # And a version rejected in the build account since it went live is skipped
    third = register(estate["dev"])
    estate["dev"].clients["sagemaker"].update_model_package(ModelPackageArn=third, ModelApprovalStatus="Rejected")
    rejected = estate["staging"].service().handle(live_event(DEV, "dev", third))
    assert rejected.result == "skipped" and "Rejected" in rejected.reason
    assert len(estate["staging"].packages()) == 1


def test_the_build_account_records_what_each_stage_made_of_a_version(estate: dict[str, StageStack]) -> None:
    # Given version 1 promoted into staging
    source = register(estate["dev"])
    staging_copy = estate["staging"].service().handle(live_event(DEV, "dev", source)).model_package_arn
    # When staging's `live` reaches the build account's route 8
    outcome = estate["dev"].service().handle(live_event(STAGING, "staging", source, staging_copy))
    # Then the build account's ledger holds it under the source version, with the stage's account
    assert outcome.result == "recorded"
    (record,) = [d for d in estate["dev"].ledger.decisions_for(source) if d.action == "stage:staging"]
    assert record.result == "live" and record.details["account"] == STAGING
    assert record.details["model_package_arn"] == staging_copy


def test_cross_account_bus_delivery_honours_the_bus_policy_and_keeps_the_envelope(
    estate: dict[str, StageStack],
) -> None:
    # Given a rule in dev forwarding stage changes to staging's default bus, and in staging a rule
    # delivering them to a queue; staging's bus policy lets dev put events
    dev, staging = estate["dev"], estate["staging"]
    role = f"arn:aws:iam::{DEV}:role/closedloop-stage-events"
    pattern = json.dumps({"source": ["closedloop"], "detail-type": ["Model Version Stage Change"]})
    dev.clients["events"].put_rule(Name="to-staging", EventPattern=pattern)
    dev.clients["events"].put_targets(
        Rule="to-staging",
        Targets=[{"Id": "staging", "Arn": f"arn:aws:events:{REGION}:{STAGING}:event-bus/default", "RoleArn": role}],
    )
    sqs = boto3.client("sqs", **credentials(STAGING))
    queue = sqs.create_queue(QueueName="promotions")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    staging.clients["events"].put_rule(Name="promote", EventPattern=pattern)
    staging.clients["events"].put_targets(Rule="promote", Targets=[{"Id": "q", "Arn": queue_arn}])
    staging.clients["events"].put_permission(
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "Dev",
                        "Effect": "Allow",
                        "Principal": {"AWS": DEV},
                        "Action": "events:PutEvents",
                        "Resource": f"arn:aws:events:{REGION}:{STAGING}:event-bus/default",
                    }
                ],
            }
        )
    )
    # When dev puts a stage change
    source = register(dev)
    detail = live_event(DEV, "dev", source).detail
    StageEvents(dev.clients["events"]).publish(detail)
    # Then staging receives it with dev as its account
    (message,) = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    delivered = json.loads(message["Body"])
    assert delivered["account"] == DEV and delivered["detail"]["source_model_package_arn"] == source
    # And an account the policy does not name cannot deliver: a stranger's rule is refused
    stranger = boto3.client("events", **credentials(STRANGER))
    stranger.put_rule(Name="to-staging", EventPattern=pattern)
    stranger.put_targets(
        Rule="to-staging",
        Targets=[{"Id": "staging", "Arn": f"arn:aws:events:{REGION}:{STAGING}:event-bus/default", "RoleArn": role}],
    )
    StageEvents(stranger).publish(detail)
    assert sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []) == []
    assert accounts.refused_deliveries[-1]["sender"] == STRANGER
