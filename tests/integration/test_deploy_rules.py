"""Routes 4 and 5 in template.yaml: their rules take the real events and nothing that only looks like them."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import pytest

from closedloop.line import LineCatalog
from closedloop.settings import Settings
from closedloop_ops.local.intrinsics import Resolver
from closedloop_ops.local.loop import ROOT
from closedloop_ops.local.template import Template, load_template
from closedloop_ops.routing import route_event
from support.events import load_event
from support.stack import stack_env

DEPLOY = "DeployModelFunction: functions/deploy_model/app.py::lambda_handler (via SQS DeployModelQueue)"
RECORD = "RecordDeploymentFunction: functions/record_deployment/app.py::lambda_handler"


@cache
def template() -> Template:
    return load_template(ROOT / "template.yaml")


def handlers(event: dict[str, Any]) -> list[str]:
    return [handler for match in route_event(event, template()).matches for handler in match.handlers]


@pytest.mark.parametrize("name", ["model_package_approved", "model_package_rejected"])
def test_approvals_and_rejections_of_our_group_reach_the_deploy_queue(name: str) -> None:
    assert handlers(load_event(name)) == [DEPLOY]


def test_the_documentations_duplicate_source_still_routes() -> None:
    event = load_event("model_package_rejected")
    event["source"] = ["aws.sagemaker"]
    assert handlers(event) == [DEPLOY]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e["detail"].update({"ModelApprovalStatus": "PendingManualApproval"}),  # a new registration
        lambda e: e["detail"].update({"ModelPackageGroupName": "someone-elses-models"}),
        lambda e: e.update({"detail-type": "SageMaker Model Package Group State Change"}),
        lambda e: e.update({"source": "custom.sagemaker"}),
    ],
)
def test_look_alikes_reach_no_rollout_handler(mutate: Any) -> None:
    event = load_event("model_package_approved")
    mutate(event)
    assert DEPLOY not in handlers(event)


@pytest.mark.parametrize("name", ["endpoint_state_change", "endpoint_deployment_state_change"])
def test_our_endpoints_events_reach_the_outcome_recorder(name: str) -> None:
    assert handlers(load_event(name)) == [RECORD]


def test_other_endpoints_events_do_not() -> None:
    event = load_event("endpoint_state_change")
    event["detail"]["EndpointName"] = "someone-elses-endpoint"
    assert handlers(event) == []
    config_change = copy.deepcopy(load_event("endpoint_state_change"))
    config_change["detail-type"] = "SageMaker Endpoint Config State Change"
    assert handlers(config_change) == []


def test_each_lines_rollout_is_guarded_by_its_six_alarms_all_declared_in_the_stack() -> None:
    resources = template().resources
    resolver = Resolver(
        parameters={name: spec.get("Default") for name, spec in template().parameters.items()},
        pseudo={"AWS::Region": "eu-west-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws"},
        mappings={},
        conditions={},
        ref=lambda logical_id: logical_id,
        get_att=lambda logical_id, attribute: f"{logical_id}.{attribute}",
    )
    env = resources["DeployModelFunction"]["Properties"]["Environment"]["Variables"]
    # the rollback alarms are the line's (closedloop.line.bind_line), not a variable of the function
    names = list(LineCatalog(Settings.from_environ(stack_env())).settings_for("loans").rollback_alarm_names)
    assert names == [
        "closedloop-loans-endpoint-5xx",
        "closedloop-loans-endpoint-latency",
        "closedloop-loans-drift-features",
        "closedloop-loans-drift-predictions",
        "closedloop-loans-drift-bias",
        "closedloop-loans-drift-attributions",
    ]
    declared = {
        resolver.resolve(spec["Properties"]["AlarmName"])
        for spec in resources.values()
        if spec["Type"] == "AWS::CloudWatch::Alarm"
    }
    assert set(names) <= declared
    # the gate's role; in a stage's stack route 8's (it releases a stage's copies by the stage policy)
    assert env["APPROVAL_GATE_ROLE_ARN"] == {
        "Fn::If": [
            "ServesAStage",
            {"Fn::GetAtt": ["PromoteModelFunctionRole", "Arn"]},
            {"Fn::GetAtt": ["ApprovalGateFunctionRole", "Arn"]},
        ]
    }
    # one deployment decision at a time, in batches of one, with partial failures
    assert resources["DeployModelFunction"]["Properties"]["ReservedConcurrentExecutions"] == 1
    mapping = next(
        spec["Properties"]
        for spec in resources.values()
        if spec["Type"] == "AWS::Lambda::EventSourceMapping"
        and spec["Properties"]["FunctionName"]
        == {"Fn::If": ["UseSnapStart", {"Ref": "DeployModelFunctionAliaslive"}, {"Ref": "DeployModelFunction"}]}
    )
    assert mapping["BatchSize"] == 1 and mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_the_rollout_alarms_watch_the_endpoint_variant() -> None:
    resources = template().resources
    for logical_id, metric in (
        ("EndpointErrorsAlarmLoans", "Invocation5XXErrors"),
        ("EndpointLatencyAlarmLoans", "ModelLatency"),
    ):
        props = resources[logical_id]["Properties"]
        assert (props["Namespace"], props["MetricName"]) == ("AWS/SageMaker", metric)
        assert [d["Name"] for d in props["Dimensions"]] == ["EndpointName", "VariantName"]
        assert props["Dimensions"][1]["Value"] == "AllTraffic"


@pytest.mark.parametrize(("account", "region"), [("999999999999", "eu-west-1"), ("111122223333", "us-east-1")])
@pytest.mark.parametrize(
    "name",
    ["model_package_approved", "model_package_rejected", "endpoint_state_change", "endpoint_deployment_state_change"],
)
def test_events_of_another_account_or_region_reach_no_rollout_handler(name: str, account: str, region: str) -> None:
    # Given a model version or endpoint of the same name in another account or region (a shared
    # registry, a cross-account rule forwarding to our bus)
    event = load_event(name)
    event["account"], event["region"] = account, region
    # When it is routed with the stack's own account and region
    matches = route_event(event, template(), account="111122223333", region="eu-west-1").matches
    # Then no rollout handler takes it
    assert matches == []
