"""Route 4 on moto: approvals and rejections in, Model / EndpointConfig / endpoint changes out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from closedloop import lineage
from closedloop.errors import ForeignEventError
from support.rollout import (
    ALARMS,
    ENDPOINT,
    GATE_ROLE,
    GROUP,
    OFFICER_ROLE,
    Rollout,
    provision_rollout,
    shared_service_models,
)
from support.stack import ACCOUNT, REGION, Stack


@pytest.fixture(autouse=True, scope="module")
def _service_models_read_once() -> Iterator[None]:
    with shared_service_models():
        yield


@pytest.fixture
def world(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Rollout:
    return provision_rollout(stack, monkeypatch)


@pytest.fixture
def manual(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Rollout:
    monkeypatch.setenv("APPROVERS", OFFICER_ROLE)
    return provision_rollout(stack, monkeypatch, mode="manual")


@pytest.fixture
def update_calls(world: Rollout, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Every UpdateEndpoint request the deploy function sends (the call still reaches moto)."""
    calls: list[dict[str, Any]] = []
    world.deliver()  # load the handler (an empty batch)
    client = world.deploy.approvals._rollouts["loans"]._hosting._sagemaker
    original = client.update_endpoint

    def spy(**request: Any) -> Any:
        calls.append(request)
        return original(**request)

    monkeypatch.setattr(client, "update_endpoint", spy)
    yield calls


def live_at_v1(world: Rollout) -> str:
    """v1 approved by the gate, deployed and recorded live."""
    arn = world.register()
    world.set_status(arn, "Approved")
    assert world.deliver(world.event(arn))["batchItemFailures"] == []
    assert world.outcome()["result"] == "live"
    return arn


def approved(world: Rollout, **kwargs: Any) -> str:
    arn = world.register()
    world.set_status(arn, "Approved", **kwargs)
    return arn


# -- first deployment ------------------------------------------------------------------------------


def test_the_first_approval_creates_the_endpoint_with_lineage_and_data_capture(world: Rollout) -> None:
    # Given version 1, approved by the approval gate's role
    arn = approved(world)
    # When its approval arrives
    response = world.deliver(world.event(arn))
    # Then the endpoint exists, on a config built from exactly that version
    assert response == {"batchItemFailures": []}
    endpoint = world.endpoint()
    config = world.sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    model = world.sm.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    assert model["PrimaryContainer"] == {"ModelPackageName": arn}
    assert model["ExecutionRoleArn"] == world.stack.settings.model_execution_role_arn
    assert config["DataCaptureConfig"]["DestinationS3Uri"] == "s3://closedloop-test-capture/capture"
    assert config["DataCaptureConfig"]["CaptureContentTypeHeader"] == {"CsvContentTypes": ["text/csv"]}
    # And model and config carry the lineage, including who approved
    for resource_arn in (model["ModelArn"], config["EndpointConfigArn"]):
        tags = {t["Key"]: t["Value"] for t in world.sm.list_tags(ResourceArn=resource_arn)["Tags"]}
        assert tags[lineage.MODEL_PACKAGE] == arn
        assert tags[lineage.MODEL_VERSION] == "1"
        assert tags[lineage.CODE_VERSION] == "4b8e2f1a9c3d7e60"
        assert tags[lineage.PIPELINE_EXECUTION].startswith("arn:aws:sagemaker:")
        assert tags[lineage.PREPARED_MANIFEST].endswith("/manifest.json")
        assert tags[lineage.APPROVAL] == f"auto:arn:aws:sts::{ACCOUNT}:assumed-role/{GATE_ROLE.rsplit('/', 1)[1]}/gate"
    # And the ledger says a deployment is pending, and why
    state = world.state()
    assert state["status"] == "creating"
    assert state["pending_model_package_arn"] == arn and state["pending_version"] == 1
    assert state["live_model_package_arn"] == ""
    assert [(d.action, d.result) for d in world.decisions(1)] == [("deploy", "deploying")]
    assert world.decisions(1)[0].details["action"] == "create_endpoint"


def test_the_same_approval_delivered_three_times_updates_once(world: Rollout, update_calls: list[Any]) -> None:
    # Given v1 live and v2 approved
    live_at_v1(world)
    arn = approved(world)
    event = world.event(arn)
    # When the approval is delivered three times: twice as the same event, once re-emitted with a new id
    for delivery in (event, event, {**event, "id": "another-envelope-id"}):
        assert world.deliver(delivery)["batchItemFailures"] == []
    # Then exactly one UpdateEndpoint, and one model and one config per version
    assert len(update_calls) == 1
    assert world.serving_version() == 2
    assert len(world.models()) == 2 and len(world.endpoint_configs()) == 2
    results = [(d.action, d.result) for d in world.decisions(2)]
    assert results.count(("deploy", "deploying")) == 1
    assert ("deduplicate", "duplicate") in results


def test_a_redelivery_after_the_idempotency_record_is_lost_changes_nothing(
    world: Rollout, update_calls: list[Any]
) -> None:
    live_at_v1(world)
    event = world.event(approved(world))
    world.deliver(event)
    ddb = boto3.client("dynamodb", region_name=REGION)
    table = world.stack.settings.idempotency_table
    for item in ddb.scan(TableName=table)["Items"]:
        ddb.delete_item(TableName=table, Key={"id": item["id"]})
    # When the same approval comes back with no idempotency record
    world.deliver(event)
    # Then the endpoint's own state stops it: it already serves that config
    assert len(update_calls) == 1
    assert world.decisions(2)[-1].result == "already_live"


def test_the_update_uses_the_blue_green_policy_and_the_alarms_that_exist(
    world: Rollout, update_calls: list[Any]
) -> None:
    live_at_v1(world)
    world.deliver(world.event(approved(world)))
    (request,) = update_calls
    assert request["EndpointName"] == ENDPOINT
    assert request["DeploymentConfig"] == {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "WaitIntervalInSeconds": 300,
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
            },
            "TerminationWaitInSeconds": 600,
            "MaximumExecutionTimeoutInSeconds": 3600,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": name} for name in ALARMS[:2]]},
    }
    assert world.endpoint()["LastDeploymentConfig"] == request["DeploymentConfig"]
    details = world.decisions(2)[-1].details
    assert details["missing_rollback_alarms"] == list(ALARMS[2:])


def test_an_alarm_already_in_alarm_does_not_guard_the_rollout(world: Rollout, update_calls: list[Any]) -> None:
    # Given the latency alarm firing before the rollout (it judges the version being replaced)
    live_at_v1(world)
    boto3.client("cloudwatch", region_name=REGION).set_alarm_state(
        AlarmName=ALARMS[1], StateValue="ALARM", StateReason="test"
    )
    world.notifications()
    world.deliver(world.event(approved(world)))
    # Then it is left out of the AutoRollbackConfiguration, and someone is told
    (request,) = update_calls
    assert request["DeploymentConfig"]["AutoRollbackConfiguration"] == {"Alarms": [{"AlarmName": ALARMS[0]}]}
    assert any(n.get("already_in_alarm") == [ALARMS[1]] for n in world.notifications())


# -- ordering -----------------------------------------------------------------------------------------


def test_two_approvals_out_of_order_never_downgrade(world: Rollout, update_calls: list[Any]) -> None:
    live_at_v1(world)
    v2, v3 = approved(world), approved(world)
    # When v3's approval is handled before v2's
    world.deliver(world.event(v3))
    world.outcome()
    world.deliver(world.event(v2))
    # Then v3 serves, and v2 was recorded as not newer
    assert world.serving_version() == 3
    assert len(update_calls) == 1
    (decision,) = world.decisions(2)
    assert (decision.action, decision.result) == ("deploy", "skipped")
    assert "not newer than the live version 3" in decision.reason


def test_an_approval_while_a_deployment_runs_waits_for_its_outcome(world: Rollout) -> None:
    # Given v2's rollout is still running (endpoint Updating)
    live_at_v1(world)
    v2, v3 = approved(world), approved(world)
    world.hold_next_update()
    world.deliver(world.event(v3))
    assert world.endpoint()["EndpointStatus"] == "Updating"
    # When v2's (older) approval arrives meanwhile
    response = world.deliver(world.event(v2))
    # Then it is retried later, not decided against a half-finished deployment
    assert len(response["batchItemFailures"]) == 1
    assert world.decisions(2)[-1].result == "endpoint_busy"


# -- who approved --------------------------------------------------------------------------------


def test_manual_mode_deploys_what_an_allow_listed_officer_approved(manual: Rollout) -> None:
    arn = approved(manual, as_role=OFFICER_ROLE, session="jane@example.com")
    assert manual.deliver(manual.event(arn))["batchItemFailures"] == []
    assert manual.endpoint()["EndpointStatus"] == "InService"
    decision = manual.decisions(1)[-1]
    assert (
        decision.details["approval"] == f"manual:arn:aws:sts::{ACCOUNT}:assumed-role/ComplianceOfficer/jane@example.com"
    )


def test_an_approval_by_an_identity_not_on_the_list_is_refused(manual: Rollout) -> None:
    # Given a data scientist (not on the allow-list) approving their own version
    arn = approved(manual, as_role=f"arn:aws:iam::{ACCOUNT}:role/DataScientist", session="bob")
    # When the approval arrives
    response = manual.deliver(manual.event(arn))
    # Then nothing is deployed or even created
    assert response["batchItemFailures"] == []
    with pytest.raises(ClientError):
        manual.endpoint()
    assert manual.models() == [] and manual.endpoint_configs() == []
    # And the refusal is in the ledger and was notified, naming the identity
    (decision,) = manual.decisions(1)
    assert (decision.action, decision.result) == ("verify_approver", "refused")
    assert decision.details["identity"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/DataScientist/bob"
    (note,) = manual.notifications()
    assert note["severity"] == "ERROR" and note["route"] == "model-approval"
    assert "not on the approver allow-list" in note["reason"]


def test_auto_mode_refuses_an_approval_not_made_by_the_gate(world: Rollout) -> None:
    arn = approved(world, as_role=OFFICER_ROLE, session="jane")
    world.deliver(world.event(arn))
    assert world.models() == []
    assert world.decisions(1)[-1].result == "refused"


# -- stale and foreign events ----------------------------------------------------------------------


def test_a_package_of_another_group_is_ignored(world: Rollout) -> None:
    world.sm.create_model_package_group(ModelPackageGroupName="other-models")
    foreign = world.register(group="other-models")
    world.set_status(foreign, "Approved")
    # When its event arrives, named as ours or as its own group
    world.deliver(world.event(foreign), world.event(foreign, ModelPackageGroupName=GROUP))
    # Then nothing is deployed, and both are recorded as skipped
    assert world.models() == []
    reasons = [d.reason for d in world.decisions(foreign)]
    assert any("is not this stack's" in r for r in reasons)
    assert any("belongs to group 'other-models'" in r for r in reasons)


def test_an_update_of_other_fields_of_an_approved_version_is_not_an_approval(world: Rollout) -> None:
    # Given someone editing the metadata of an approved version (the event says what changed)
    arn = approved(world)
    world.sm.update_model_package(ModelPackageArn=arn, CustomerMetadataProperties={"owner": "risk-team"})
    # When that event arrives
    world.deliver(world.event(arn, UpdatedModelPackageFields=["CustomerMetadataProperties"]))
    # Then it is not mistaken for an approval by someone who may not approve
    assert world.models() == []
    (decision,) = world.decisions(1)
    assert decision.result == "skipped" and "not the approval status" in decision.reason
    assert world.notifications() == []


def test_a_package_no_longer_approved_when_read_is_not_deployed(world: Rollout) -> None:
    # Given an approval event that arrives after the version was rejected again
    arn = approved(world)
    event = world.event(arn)
    world.set_status(arn, "Rejected")
    # When it is handled
    assert world.deliver(event)["batchItemFailures"] == []
    # Then nothing is deployed, and the ledger says why
    assert world.models() == []
    (decision,) = world.decisions(1)
    assert decision.result == "skipped" and "Rejected now" in decision.reason


# -- the endpoint is busy -------------------------------------------------------------------------


def test_update_rejected_because_the_endpoint_is_updating_is_retried_and_applied_once(
    world: Rollout, update_calls: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given v1 live, and an UpdateEndpoint that SageMaker refuses: another update began in between
    live_at_v1(world)
    arn = approved(world)
    client = world.deploy.approvals._rollouts["loans"]._hosting._sagemaker
    spying = client.update_endpoint

    def racing(**request: Any) -> Any:
        world.set_endpoint_status("Updating")
        return spying(**request)

    monkeypatch.setattr(client, "update_endpoint", racing)
    # When the approval is handled through the queue
    response, message = world.deliver_through_queue(world.event(arn))
    # Then it is a batch item failure, with its visibility pushed out (backoff) — not dropped
    assert response["batchItemFailures"] == [{"itemIdentifier": message["MessageId"]}]
    sqs = boto3.client("sqs", region_name=REGION)
    assert sqs.receive_message(QueueUrl=world.queue_url).get("Messages", []) == []
    attributes = sqs.get_queue_attributes(QueueUrl=world.queue_url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "1"
    assert world.decisions(2)[-1].result == "endpoint_busy"
    assert world.endpoint()["EndpointConfigName"] != world.state().get("pending_endpoint_config")
    # When the other update finishes and the event comes back
    world.set_endpoint_status("InService")
    monkeypatch.setattr(client, "update_endpoint", spying)
    assert world.deliver(world.event(arn, event_id=json.loads(message["Body"])["id"]))["batchItemFailures"] == []
    # Then it is applied exactly once, and no resource was created twice
    assert len(update_calls) == 2  # the refused call and the one that went through
    assert world.serving_version() == 2
    assert len(world.models()) == 2 and len(world.endpoint_configs()) == 2


def test_an_endpoint_being_created_holds_the_event(world: Rollout) -> None:
    arn = approved(world)
    world.deliver(world.event(arn))
    world.set_endpoint_status("Creating")
    v2 = approved(world)
    assert len(world.deliver(world.event(v2))["batchItemFailures"]) == 1


def test_a_failed_endpoint_sends_the_event_to_the_dead_letter_queue_at_once(world: Rollout) -> None:
    live_at_v1(world)
    world.set_endpoint_status("Failed", "capacity")
    arn = approved(world)
    world.notifications()
    assert world.deliver(world.event(arn))["batchItemFailures"] == []
    dead = boto3.client("sqs", region_name=REGION).receive_message(
        QueueUrl=world.dlq_url, MessageAttributeNames=["All"]
    )["Messages"]
    assert len(dead) == 1
    assert dead[0]["MessageAttributes"]["closedloop-error"]["StringValue"] == "EndpointUnusable"
    assert json.loads(dead[0]["Body"])["detail"]["ModelPackageArn"] == arn
    # and the reason is where `closedloop dlq show` looks for it
    assert "the endpoint is Failed" in world.ledger.decisions_for(f"sqs:{dead[0]['MessageId']}")[-1].reason
    assert world.decisions(2)[-1].result == "failed"
    assert [n["severity"] for n in world.notifications()] == ["ERROR"]


def test_a_malformed_event_goes_to_the_dead_letter_queue_with_the_reason(world: Rollout) -> None:
    event = world.event(approved(world), ModelApprovalStatus="PendingManualApproval")
    assert world.deliver(event)["batchItemFailures"] == []
    dead = boto3.client("sqs", region_name=REGION).receive_message(
        QueueUrl=world.dlq_url, MessageAttributeNames=["All"]
    )["Messages"]
    assert dead[0]["MessageAttributes"]["closedloop-error"]["StringValue"] == "InvalidEvent"
    assert world.models() == []


# -- rollback: failed update, rejection of the live version -----------------------------------------


def test_a_failed_update_is_recorded_notified_and_never_redeployed(world: Rollout, update_calls: list[Any]) -> None:
    # Given v1 live and v2's rollout rolled back by SageMaker (the old config stays in service)
    live_at_v1(world)
    v2 = approved(world)
    world.fail_next_update("Deployment rolled back: alarm closedloop-loans-endpoint-5xx in ALARM during baking")
    world.deliver(world.event(v2))
    world.notifications()
    # When the endpoint reports back
    assert world.outcome()["result"] == "rolled_back"
    # Then v1 still serves; v2 is marked, tagged and notified
    assert world.serving_version() == 1
    assert world.package_tags(2)[lineage.DEPLOYMENT_OUTCOME] == "rolled-back"
    assert world.ledger.get_state(f"rolled-back#{v2}")["by"] == "auto-rollback"
    (note,) = world.notifications()
    assert note["severity"] == "WARNING" and "alarm closedloop-loans-endpoint-5xx" in note["reason"]
    # When v2 is approved again (a new status change, not a duplicate)
    world.set_status(v2, "Rejected")
    world.set_status(v2, "Approved")
    world.deliver(world.event(v2))
    # Then it is not redeployed automatically
    assert len(update_calls) == 1
    assert world.serving_version() == 1
    assert "rolled back before" in world.decisions(2)[-1].reason


def test_rejecting_the_live_version_rolls_back_to_the_previous_approved_one(
    world: Rollout, update_calls: list[Any]
) -> None:
    # Given v1 and v2 approved and v2 live
    live_at_v1(world)
    v2 = approved(world)
    world.deliver(world.event(v2))
    world.outcome()
    assert world.serving_version() == 2
    # When v2 is rejected while live (in auto mode the gate's role may reject)
    world.set_status(v2, "Rejected")
    world.notifications()
    assert world.deliver(world.event(v2))["batchItemFailures"] == []
    # Then v1 is deployed again, through the same blue/green path (its model and config are reused)
    assert len(update_calls) == 2
    assert (
        update_calls[-1]["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == "CANARY"
    )
    assert world.serving_version() == 1
    assert len(world.models()) == 2
    decision = world.decisions(2)[-1]
    assert (decision.action, decision.result) == ("rollback", "deploying")
    assert decision.details["deployed_version"] == 1
    assert any("Rolling back to model version 1" in n["subject"] for n in world.notifications())
    # And when the endpoint reports back, v2 is marked rolled back and v1 is live
    assert world.outcome()["result"] == "live"
    assert world.state()["live_version"] == 1
    assert world.package_tags(2)[lineage.DEPLOYMENT_OUTCOME] == "rolled-back"
    assert world.ledger.get_state(f"rolled-back#{v2}")["by"] == "rollback"


def test_rejecting_a_version_that_is_not_live_is_only_recorded(world: Rollout, update_calls: list[Any]) -> None:
    live_at_v1(world)
    v2 = world.register()
    world.set_status(v2, "Rejected")
    world.deliver(world.event(v2))
    assert update_calls == []
    assert world.decisions(2)[-1].result == "recorded"


def test_rejecting_the_only_version_cannot_roll_back_and_says_so(world: Rollout) -> None:
    v1 = live_at_v1(world)
    world.set_status(v1, "Rejected")
    world.notifications()
    world.deliver(world.event(v1))
    assert world.decisions(1)[-1].result == "no_rollback_target"
    assert [n["severity"] for n in world.notifications()] == ["ERROR"]
    assert world.serving_version() == 1


def test_a_version_of_another_account_or_region_is_not_ours_and_deploys_nothing(world: Rollout) -> None:
    # Given an approved version, and events about it that name another account or region
    arn = approved(world)
    foreign_arn = world.event(arn)
    foreign_arn["detail"]["ModelPackageArn"] = arn.replace(":123456789012:", ":999999999999:")
    foreign_envelope = world.event(arn)
    foreign_envelope["region"] = "ap-south-1"
    # When they reach the rollout
    for event in (foreign_arn, foreign_envelope):
        assert world.deliver(event)["batchItemFailures"] == []
    # Then both are in the dead-letter queue as "not ours" (the refusal recorded), and nothing was deployed
    dead = boto3.client("sqs", region_name=REGION).receive_message(
        QueueUrl=world.dlq_url, MessageAttributeNames=["All"], MaxNumberOfMessages=10
    )["Messages"]
    assert [m["MessageAttributes"]["closedloop-error"]["StringValue"] for m in dead] == ["ForeignEvent"] * 2
    assert world.models() == []
    assert [(d.result, d.reason.split(":")[0]) for d in world.decisions(arn)] == [("failed", "not ours")]


def test_an_endpoint_event_of_another_account_is_not_ours(world: Rollout) -> None:
    # Given v1 live, and an endpoint event from another account
    live_at_v1(world)
    event = world.endpoint_event()
    event["account"] = "999999999999"
    before = world.state()
    # When it reaches the outcome recorder, then it is refused as not ours and changes nothing
    with pytest.raises(ForeignEventError, match="not ours: the event is in account 999999999999"):
        world.outcome(event)
    assert world.state() == before
