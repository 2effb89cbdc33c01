"""The template's routes 6 and 7: alarms the retrain route recognises, rules, schedule, least privilege."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest

from closedloop.events.scheduler import DriftMonitorRun, scheduler_input
from closedloop.line import LineCatalog, LineResources
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
        ("DriftFeaturesAlarmLoans", "closedloop-loans-drift-features", "MaxFeaturePSI", "DriftPsiThreshold"),
        ("DriftPredictionsAlarmLoans", "closedloop-loans-drift-predictions", "PredictionKS", "DriftKsThreshold"),
        ("DriftBiasAlarmLoans", "closedloop-loans-drift-bias", "BiasDrift", "BiasDriftThreshold"),
    ],
)
def test_drift_alarms_watch_the_monitor_metrics_under_names_route_6_recognises(
    template: Template, logical_id: str, name: str, metric: str, threshold: str
) -> None:
    alarm = resolver(template).resolve(props(template, logical_id))
    settings = LineCatalog(Settings.from_environ(stack_env())).settings_for("loans")
    assert alarm["AlarmName"] == name and name in settings.retraining_alarm_names
    assert (alarm["Namespace"], alarm["MetricName"]) == (settings.drift_metrics_namespace, metric)
    assert alarm["Dimensions"] == [{"Name": "Endpoint", "Value": settings.endpoint_name}]
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"
    assert props(template, logical_id)["Threshold"] == {"Ref": threshold}
    assert {"Key": "closedloop:model-group", "Value": settings.model_package_group} in alarm["Tags"]


def _retrain_rules(template: Template) -> dict[str, dict[str, Any]]:
    return {
        logical_id: spec["Properties"]
        for logical_id, spec in template.resources.items()
        if spec["Type"] == "AWS::Events::Rule" and logical_id.startswith("StartRetrainingFunction")
    }


def named_resolver(template: Template, **parameters: str) -> Resolver:
    """A resolver whose Ref of an alarm resource is the alarm's name (CloudFormation's Ref)."""
    values = {name: spec.get("Default") for name, spec in template.parameters.items()}
    values.update(parameters)
    holder: dict[str, Resolver] = {}

    def ref(logical_id: str) -> Any:
        return holder["r"].resolve(template.resources[logical_id]["Properties"]["AlarmName"])

    holder["r"] = Resolver(
        parameters=values,
        pseudo={"AWS::Region": "eu-west-1", "AWS::AccountId": "111122223333", "AWS::Partition": "aws"},
        mappings={},
        conditions=template.cfn.get("Conditions", {}),
        ref=ref,
        get_att=lambda *args: f"<{'.'.join(args)}>",
    )
    return holder["r"]


def test_the_retrain_rules_take_every_lines_drift_alarms_and_the_extra_names_and_dead_letter(
    template: Template,
) -> None:
    # Given the template's route 6: one rule for the lines' drift alarms, one for ExtraAlarmNames
    rules = _retrain_rules(template)
    assert set(rules) == {"StartRetrainingFunctionRetrainingAlarms", "StartRetrainingFunctionExtraAlarms"}
    assert template.resources["StartRetrainingFunctionExtraAlarms"]["Condition"] == "HasExtraAlarmNames"
    for rule in rules.values():
        target = rule["Targets"][0]
        assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["EventsDlq", "Arn"]}}
        assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
        # EventBridge gives up when the handler would refuse the event as stale anyway
        assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] == {"Ref": "MaxAlarmAgeSeconds"}
    # When the patterns are resolved
    drift = named_resolver(template).resolve(rules["StartRetrainingFunctionRetrainingAlarms"]["EventPattern"])
    extra = named_resolver(template, ExtraAlarmNames="mm-drift-alarm,Model Monitor quality").resolve(
        rules["StartRetrainingFunctionExtraAlarms"]["EventPattern"]
    )
    # Then they take entries into ALARM of this account and region: drift alarms by their name's
    # shape (<prefix>-<line>-drift-…, which no endpoint or Lambda alarm has), extra ones by exact name
    for pattern in (drift, extra):
        assert pattern["source"] == ["aws.cloudwatch"]
        assert pattern["detail-type"] == ["CloudWatch Alarm State Change"]
        assert (pattern["account"], pattern["region"]) == (["111122223333"], ["eu-west-1"])
        assert pattern["detail"]["state"] == {"value": ["ALARM"]}
    assert drift["detail"]["alarmName"] == [{"wildcard": "closedloop-*-drift-*"}]
    assert extra["detail"]["alarmName"] == ["mm-drift-alarm", "Model Monitor quality"]


@pytest.mark.parametrize(
    ("model_lines", "served"),
    [("loans", {"loans"}), ("loans,churn", {"loans", "churn"}), ("churn", {"churn"}), ("churn-2,loans2", set())],
)
def test_a_stack_makes_exactly_the_resources_of_the_lines_it_serves_named_as_the_package_derives_them(
    template: Template, model_lines: str, served: set[str]
) -> None:
    # Given the template with ModelLines set
    resolve = named_resolver(template, ModelLines=model_lines)
    made = {
        logical_id: spec
        for logical_id, spec in template.resources.items()
        if "Condition" not in spec or resolve.condition(spec["Condition"])
    }
    names = {
        resolve.resolve(spec["Properties"].get("AlarmName") or spec["Properties"].get("Name"))
        for spec in made.values()
        if spec["Type"] in ("AWS::CloudWatch::Alarm", "AWS::Scheduler::Schedule")
    }
    groups = {
        resolve.resolve(spec["Properties"]["ModelPackageGroupName"])
        for spec in made.values()
        if spec["Type"] == "AWS::SageMaker::ModelPackageGroup"
    }
    # Then each served line has exactly the names closedloop.line.LineResources gives it, and no
    # other line has any (a name that merely contains a line's name is not it)
    expected = {LineResources.of("closedloop", "raw/", line) for line in served}
    assert groups == {owned.model_package_group for owned in expected}
    assert names == {
        name for owned in expected for name in (*owned.drift_alarms, *owned.endpoint_alarms, owned.drift_schedule)
    }
    for owned in expected:
        assert all(fnmatch(name, "closedloop-*-drift-*") for name in owned.drift_alarms)
        assert not any(fnmatch(name, "closedloop-*-drift-*") for name in owned.endpoint_alarms)


_ROUTE_6_ENV = {"MODEL_LINES", "RESOURCE_PREFIX", "EXTRA_ALARM_NAMES", "MAX_ALARM_AGE_SECONDS", "CLOSEDLOOP_ACCOUNT_ID"}


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
    schedule = props(template, "DriftMonitorScheduleLoans")
    assert schedule["ScheduleExpression"] == {"Ref": "DriftSchedule"}
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    target = schedule["Target"]
    assert target["Arn"] == {
        "Fn::If": [
            "UseSnapStart",
            {"Ref": "DriftMonitorFunctionAliaslive"},
            {"Fn::GetAtt": ["DriftMonitorFunction", "Arn"]},
        ]
    }
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["DriftScheduleDlq", "Arn"]}}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
    # When Scheduler fills in its context attributes
    delivered = scheduler_input(
        resolver(template).resolve(target["Input"]),
        schedule_arn="arn:aws:scheduler:eu-west-1:111122223333:schedule/default/s",
        scheduled_time=datetime(2026, 11, 27, 10, 0, tzinfo=UTC),
        execution_id="d32c5kddcf5bb8c3",
        attempt=2,
    )
    # Then the drift function's model accepts it
    run = DriftMonitorRun.model_validate(delivered)
    assert (run.execution_id, run.attempt, run.line) == ("d32c5kddcf5bb8c3", 2, "loans")


def test_the_scheduler_role_may_only_invoke_the_monitor_and_dead_letter(template: Template) -> None:
    role = props(template, "DriftScheduleRole")
    trust = role["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "scheduler.amazonaws.com"}]
    assert trust[0]["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    statements = [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    assert {(s["Action"], json.dumps(s["Resource"])) for s in statements} == {
        (
            "lambda:InvokeFunction",
            json.dumps(
                {
                    "Fn::If": [
                        "UseSnapStart",
                        {"Ref": "DriftMonitorFunctionAliaslive"},
                        {"Fn::GetAtt": ["DriftMonitorFunction", "Arn"]},
                    ]
                }
            ),
        ),
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
        "Fn::Sub": "capture/${ResourcePrefix}-*"
    }
    retrain = {s.get("Sid"): s for s in _statements(template, "StartRetrainingFunctionRole")}
    pipeline = retrain["StartTrainingPipeline"]["Resource"]["Fn::Sub"]
    assert pipeline.endswith(":pipeline/${ResourcePrefix}-training")


def test_the_attribution_alarm_fires_below_sagemakers_ndcg_threshold_and_retrains(template: Template) -> None:
    # Given the loans line's attribution drift alarm, resolved with the template's defaults
    alarm = resolver(template).resolve(props(template, "DriftAttributionsAlarmLoans"))
    settings = LineCatalog(Settings.from_environ(stack_env())).settings_for("loans")
    # Then it watches the monitor's AttributionNdcg of the line's endpoint and alarms below 0.9
    assert alarm["AlarmName"] == "closedloop-loans-drift-attributions"
    assert alarm["AlarmName"] in settings.retraining_alarm_names and alarm["AlarmName"] in settings.rollback_alarm_names
    assert (alarm["Namespace"], alarm["MetricName"]) == (settings.drift_metrics_namespace, "AttributionNdcg")
    assert alarm["Dimensions"] == [{"Name": "Endpoint", "Value": settings.endpoint_name}]
    assert (alarm["ComparisonOperator"], alarm["Statistic"], alarm["Threshold"]) == (
        "LessThanThreshold",
        "Minimum",
        0.9,
    )
    assert alarm["TreatMissingData"] == "notBreaching"
    assert template.parameters["AttributionNdcgThreshold"]["Default"] == 0.9
    # And the retraining rule's name pattern takes it, as it takes the other drift alarms
    assert fnmatch(alarm["AlarmName"], "closedloop-*-drift-*")


def test_the_monitor_may_start_only_its_attribution_jobs_with_the_pipelines_role(template: Template) -> None:
    drift = {s.get("Sid"): s for s in _statements(template, "DriftMonitorFunctionRole")}
    jobs = drift["RunAttributionJobs"]
    assert set(jobs["Action"]) == {
        "sagemaker:CreateProcessingJob",
        "sagemaker:DescribeProcessingJob",
        "sagemaker:AddTags",
    }
    assert jobs["Resource"]["Fn::Sub"].endswith(":processing-job/${ResourcePrefix}-attr-*")
    passed = drift["PassAttributionJobRole"]
    assert passed["Resource"] == {"Fn::GetAtt": ["TrainingPipelineRole", "Arn"]}
    assert passed["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    env = props(template, "DriftMonitorFunction")["Environment"]["Variables"]
    image = resolver(template).resolve(env["CLARIFY_IMAGE_URI"])
    assert image == "131013547314.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-clarify-processing:1.0"
    assert env["ATTRIBUTION_JOB_ROLE_ARN"] == {"Fn::GetAtt": ["TrainingPipelineRole", "Arn"]}
