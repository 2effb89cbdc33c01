"""Route 5 on moto: endpoint events → outcome recorded in the ledger, version tagged, people told."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest

from closedloop import lineage
from closedloop.errors import InvalidEventError
from closedloop_ops.moto_ext.hosting import finish_update
from support.events import load_event
from support.rollout import ENDPOINT, Rollout, provision_rollout, shared_service_models
from support.stack import ACCOUNT, REGION, Stack


@pytest.fixture(autouse=True, scope="module")
def _service_models_read_once() -> Iterator[None]:
    with shared_service_models():
        yield


@pytest.fixture
def world(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Rollout:
    return provision_rollout(stack, monkeypatch)


def deploy(world: Rollout) -> str:
    """A new version approved by the gate and handed to the deploy function."""
    arn = world.register()
    world.set_status(arn, "Approved")
    assert world.deliver(world.event(arn))["batchItemFailures"] == []
    return arn


def test_the_first_deployment_becomes_live(world: Rollout) -> None:
    # Given the endpoint created for v1
    arn = deploy(world)
    # When SageMaker says it is in service
    result = world.outcome()
    # Then v1 is live in the ledger, tagged live, and the endpoint carries its lineage
    assert result["result"] == "live" and result["version"] == 1
    state = world.state()
    assert (state["live_model_package_arn"], state["live_version"], state["status"]) == (arn, 1, "live")
    assert state["endpoint_config"] == world.endpoint()["EndpointConfigName"]
    assert state["pending_endpoint_config"] == ""
    assert world.package_tags(1)[lineage.DEPLOYMENT_OUTCOME] == "live"
    endpoint_tags = {
        t["Key"]: t["Value"] for t in world.sm.list_tags(ResourceArn=world.endpoint()["EndpointArn"])["Tags"]
    }
    assert endpoint_tags[lineage.MODEL_PACKAGE] == arn
    (decision,) = [d for d in world.decisions(1) if d.route == "deployment-outcome"]
    assert (decision.action, decision.result) == ("record_outcome", "live")
    # And nobody is paged for a success
    assert world.notifications() == []


def test_a_new_version_supersedes_the_old_one(world: Rollout) -> None:
    v1 = deploy(world)
    world.outcome()
    v2 = deploy(world)
    assert world.outcome()["result"] == "live"
    state = world.state()
    assert (state["live_model_package_arn"], state["previous_model_package_arn"]) == (v2, v1)
    assert world.package_tags(1)[lineage.DEPLOYMENT_OUTCOME] == "superseded"
    assert world.package_tags(2)[lineage.DEPLOYMENT_OUTCOME] == "live"


def test_progress_events_decide_nothing(world: Rollout) -> None:
    # Given v2's blue/green rollout in progress (canary baking)
    deploy(world)
    world.outcome()
    world.hold_next_update()
    v2 = deploy(world)
    event = world.endpoint_event(
        "SageMaker Endpoint Deployment State Change",
        PendingDeploymentSummary={
            "EndpointConfigName": world.state()["pending_endpoint_config"],
            "StartTime": 1795771331882,
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "VariantStatus": [{"Status": "Baking", "StatusMessage": "Baking for 300 s"}],
                }
            ],
        },
    )
    # When the progress event arrives
    result = world.outcome(event)
    # Then it is recorded as progress; v2 is still pending, v1 still live
    assert result["result"] == "in_progress"
    assert world.state()["pending_model_package_arn"] == v2
    assert world.state()["live_version"] == 1
    progress = world.decisions(2)[-1]
    assert progress.result == "in_progress"
    assert progress.details["variant_status"] == [
        {"variant": "AllTraffic", "status": "Baking", "message": "Baking for 300 s"}
    ]


def test_an_auto_rollback_is_recorded_tagged_marked_and_notified(world: Rollout) -> None:
    deploy(world)
    world.outcome()
    world.hold_next_update()
    v2 = deploy(world)
    # When SageMaker rolls the deployment back (an alarm tripped while baking)
    finish_update(ACCOUNT, REGION, ENDPOINT, succeeded=False, reason="Alarm closedloop-loans-endpoint-latency in ALARM")
    world.notifications()
    result = world.outcome()
    # Then
    assert result["result"] == "rolled_back"
    state = world.state()
    assert (state["status"], state["live_version"], state["pending_endpoint_config"]) == ("rolled_back", 1, "")
    assert world.package_tags(2)[lineage.DEPLOYMENT_OUTCOME] == "rolled-back"
    assert world.package_tags(1)[lineage.DEPLOYMENT_OUTCOME] == "live"
    mark = world.ledger.get_state(f"rolled-back#{v2}")
    assert mark is not None and mark["reason"] == "Alarm closedloop-loans-endpoint-latency in ALARM"
    (note,) = world.notifications()
    assert note["route"] == "deployment-outcome" and note["severity"] == "WARNING"
    assert "version 1 still serves" in note["subject"]


def test_the_same_outcome_reported_twice_is_recorded_once(world: Rollout) -> None:
    deploy(world)
    world.outcome()
    world.fail_next_update()
    deploy(world)
    world.notifications()
    event = world.endpoint_event()
    first = world.outcome(event)
    again = world.outcome(copy.deepcopy(event))
    other = world.outcome()
    assert [first["result"], again["result"], other["result"]] == ["rolled_back", "unchanged", "unchanged"]
    assert len(world.notifications()) == 1
    assert [d.result for d in world.decisions(2) if d.action == "record_outcome"] == ["rolled_back"]


def test_a_failed_endpoint_is_recorded_as_failed_and_pages(world: Rollout) -> None:
    arn = deploy(world)
    world.set_endpoint_status("Failed", "ResourceLimitExceeded: no ml.m5.large capacity")
    result = world.outcome(world.endpoint_event(FailureReason="ResourceLimitExceeded: no ml.m5.large capacity"))
    assert result["result"] == "failed"
    assert world.package_tags(1)[lineage.DEPLOYMENT_OUTCOME] == "failed"
    assert world.ledger.get_state(f"rolled-back#{arn}")["by"] == "failed-deployment"
    (note,) = world.notifications()
    assert note["severity"] == "ERROR" and "ResourceLimitExceeded" in note["reason"]
    assert world.state()["status"] == "failed"


def test_a_change_made_by_hand_is_followed(world: Rollout) -> None:
    # Given v2 live, and an operator who points the endpoint back at v1's config by hand
    deploy(world)
    world.outcome()
    v1_config = world.endpoint()["EndpointConfigName"]
    deploy(world)
    world.outcome()
    world.sm.update_endpoint(EndpointName=ENDPOINT, EndpointConfigName=v1_config)
    world.notifications()
    # When the endpoint reports back
    result = world.outcome()
    # Then the ledger follows the endpoint, and says it was changed outside the rollout
    assert result["result"] == "reconciled" and result["version"] == 1
    assert world.state()["live_version"] == 1
    assert world.package_tags(2)[lineage.DEPLOYMENT_OUTCOME] == "superseded"
    assert [n["severity"] for n in world.notifications()] == ["WARNING"]


def test_events_of_other_endpoints_are_ignored(world: Rollout) -> None:
    deploy(world)
    event = world.endpoint_event(EndpointName="someone-elses-endpoint")
    assert world.outcome(event)["result"] == "ignored"
    assert world.state()["status"] == "creating"


def test_a_malformed_event_fails_with_the_reason_and_no_values(world: Rollout) -> None:
    event = load_event("endpoint_state_change")
    event["detail"]["EndpointStatus"] = "MELTING"
    with pytest.raises(InvalidEventError) as exc:
        world.outcome(event)
    assert "detail.EndpointStatus" in str(exc.value)
    assert "MELTING" not in str(exc.value)
