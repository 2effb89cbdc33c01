"""The template's routes 6 and 7: alarms the retrain route recognises, rules, schedule, least privilege."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from closedloop.events.scheduler import DriftMonitorRun, scheduler_input
from closedloop.settings import Settings
from closedloop_ops.local.intrinsics import Resolver
from closedloop_ops.local.template import Template, load_template
from support.stack import stack_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template(ROOT / "template.yaml")


def resolver(template: Template, **parameters: str) -> Resolver:
    values = {name: spec.get("Default") for name, spec in template.parameters.items()}
    values.update(parameters)

    def unresolved(*args: str) -> Any:
        return f"<{'.'.join(args)}>"

    return Resolver(
        parameters=values,
        pseudo={
            "AWS::Region": "eu-west-1",
            "AWS::AccountId": "111122223333",
            "AWS::Partition": "aws",
            "AWS::StackName": "closedloop-dev",
            "AWS::URLSuffix": "amazonaws.com",
        },
        mappings=template.cfn.get("Mappings", {}),
        conditions=template.cfn.get("Conditions", {}),
        ref=unresolved,
        get_att=unresolved,
    )


def props(template: Template, logical_id: str) -> dict[str, Any]:
    return dict(template.resources[logical_id]["Properties"])


@pytest.mark.parametrize(
    ("logical_id", "name", "metric", "threshold"),
    [
        ("DriftFeaturesAlarm", "closedloop-drift-features", "MaxFeaturePSI", "DriftPsiThreshold"),
        ("DriftPredictionsAlarm", "closedloop-drift-predictions", "PredictionKS", "DriftKsThreshold"),
        ("DriftBiasAlarm", "closedloop-drift-bias", "BiasDrift", "BiasDriftThreshold"),
    ],
)
def test_drift_alarms_watch_the_monitor_metrics_under_names_route_6_recognises(
    template: Template, logical_id: str, name: str, metric: str, threshold: str
) -> None:
    alarm = resolver(template).resolve(props(template, logical_id))
    settings = Settings.from_environ(stack_env())
    assert alarm["AlarmName"] == name and name.startswith(settings.alarm_prefix)
    assert (alarm["Namespace"], alarm["MetricName"]) == (settings.drift_metrics_namespace, metric)
    assert alarm["Dimensions"] == [{"Name": "Endpoint", "Value": settings.endpoint_name}]
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"
    assert props(template, logical_id)["Threshold"] == {"Ref": threshold}
    assert {"Key": "closedloop:model-group", "Value": settings.model_package_group} in alarm["Tags"]


def test_both_retrain_rules_catch_alarm_entries_and_dead_letter(template: Template) -> None:
    rules = {
        logical_id: spec["Properties"]
        for logical_id, spec in template.resources.items()
        if spec["Type"] == "AWS::Events::Rule" and logical_id.startswith("StartRetrainingFunction")
    }
    assert set(rules) == {"StartRetrainingFunctionAlarmsOfThisStack", "StartRetrainingFunctionListedAlarms"}
    for rule in rules.values():
        pattern = rule["EventPattern"]
        assert pattern["source"] == ["aws.cloudwatch"]
        assert pattern["detail-type"] == ["CloudWatch Alarm State Change"]
        assert pattern["detail"]["state"] == {"value": ["ALARM"]}
        target = rule["Targets"][0]
        assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["EventsDlq", "Arn"]}}
        assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
    prefix = resolver(template).resolve(rules["StartRetrainingFunctionAlarmsOfThisStack"]["EventPattern"])
    assert prefix["detail"]["alarmName"] == [{"prefix": "closedloop-"}]
    # the listed names: none configured matches only the empty name (no alarm has one)
    listed = rules["StartRetrainingFunctionListedAlarms"]["EventPattern"]
    assert resolver(template).resolve(listed)["detail"]["alarmName"] == [""]
    named = resolver(template, ExtraAlarmNames="mm-drift-alarm,Model Monitor quality").resolve(listed)
    assert named["detail"]["alarmName"] == ["mm-drift-alarm", "Model Monitor quality"]


def test_functions_have_on_failure_destinations_logs_and_bounded_concurrency(template: Template) -> None:
    retrain = props(template, "StartRetrainingFunction")
    assert 1 <= retrain["ReservedConcurrentExecutions"] <= 5
    drift = props(template, "DriftMonitorFunction")
    assert (drift["Timeout"], drift["MemorySize"]) == (900, 1024)
    for logical_id in ("StartRetrainingFunction", "DriftMonitorFunction"):
        config = props(template, f"{logical_id}EventInvokeConfig")
        assert config["MaximumRetryAttempts"] == 2
        assert config["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["FunctionFailuresDlq", "Arn"]}
        group = props(template, logical_id)["LoggingConfig"]["LogGroup"]["Ref"]
        assert props(template, group)["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_the_schedule_sends_exactly_what_the_drift_function_parses(template: Template) -> None:
    schedule = props(template, "DriftMonitorSchedule")
    assert schedule["ScheduleExpression"] == {"Ref": "DriftSchedule"}
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    target = schedule["Target"]
    assert target["Arn"] == {"Fn::GetAtt": ["DriftMonitorFunction", "Arn"]}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["DriftScheduleDlq", "Arn"]}}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
    # When Scheduler fills in its context attributes
    delivered = scheduler_input(
        target["Input"],
        schedule_arn="arn:aws:scheduler:eu-west-1:111122223333:schedule/default/s",
        scheduled_time=datetime(2026, 11, 27, 10, 0, tzinfo=UTC),
        execution_id="d32c5kddcf5bb8c3",
        attempt=2,
    )
    # Then the drift function's model accepts it
    run = DriftMonitorRun.model_validate(delivered)
    assert (run.execution_id, run.attempt) == ("d32c5kddcf5bb8c3", 2)


def test_the_scheduler_role_may_only_invoke_the_monitor_and_dead_letter(template: Template) -> None:
    role = props(template, "DriftScheduleRole")
    trust = role["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "scheduler.amazonaws.com"}]
    assert trust[0]["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    statements = [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    assert {(s["Action"], json.dumps(s["Resource"])) for s in statements} == {
        ("lambda:InvokeFunction", json.dumps({"Fn::GetAtt": ["DriftMonitorFunction", "Arn"]})),
        ("sqs:SendMessage", json.dumps({"Fn::GetAtt": ["DriftScheduleDlq", "Arn"]})),
    }


def _statements(template: Template, role: str) -> list[dict[str, Any]]:
    return [s for policy in props(template, role)["Policies"] for s in policy["PolicyDocument"]["Statement"]]


def test_function_policies_are_scoped(template: Template) -> None:
    for role in ("StartRetrainingFunctionRole", "DriftMonitorFunctionRole"):
        for statement in _statements(template, role):
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if statement["Resource"] == "*":
                # only PutMetricData, and only into the drift namespace
                assert actions == ["cloudwatch:PutMetricData"]
                assert statement["Condition"] == {"StringEquals": {"cloudwatch:namespace": "closedloop/Drift"}}
    drift = {s.get("Sid"): s for s in _statements(template, "DriftMonitorFunctionRole")}
    assert drift["ReadCapturedTraffic"]["Action"] == "s3:GetObject"
    assert drift["ListCapturedTraffic"]["Condition"]["StringLike"]["s3:prefix"] == {
        "Fn::Sub": "capture/${ResourcePrefix}-endpoint/*"
    }
    retrain = {s.get("Sid"): s for s in _statements(template, "StartRetrainingFunctionRole")}
    pipeline = retrain["StartTrainingPipeline"]["Resource"]["Fn::Sub"]
    assert pipeline.endswith(":pipeline/${ResourcePrefix}-training")
