"""Least privilege and hardening, checked on the CloudFormation the SAM template becomes."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from closedloop_ops.local.loop import ROOT
from closedloop_ops.local.template import Template, load_template

# Actions AWS does not let a policy scope to a resource (the service authorisation reference
# lists no resource type for them); everything else that changes something must name resources.
UNSCOPABLE = {
    "cloudwatch:PutMetricData",
    "ecr:GetAuthorizationToken",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "xray:GetSamplingStatisticSummaries",
    "sagemaker:ListModelPackages",
    "sagemaker:ListPipelineExecutions",
    "sagemaker:ListProcessingJobs",
    "sagemaker:Search",
}
READ_PREFIXES = ("Describe", "List", "Get", "BatchGet", "Query", "Scan", "Head")
ALLOWED_MANAGED = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole",
}


@cache
def template() -> Template:
    return load_template(ROOT / "template.yaml")


def statements() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for logical_id, resource in template().resources.items():
        if resource["Type"] == "AWS::IAM::Role":
            for policy in resource["Properties"].get("Policies", []):
                statement = policy["PolicyDocument"]["Statement"]
                for item in statement if isinstance(statement, list) else [statement]:
                    found.append((f"{logical_id}/{policy['PolicyName']}", item))
    return found


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_no_mutating_action_is_granted_on_every_resource() -> None:
    offenders = []
    for where, statement in statements():
        if statement.get("Effect") != "Allow" or "*" not in _as_list(statement.get("Resource")):
            continue
        for action in _as_list(statement["Action"]):
            verb = action.split(":", 1)[1] if ":" in action else action
            if action in UNSCOPABLE or verb.startswith(READ_PREFIXES):
                continue
            offenders.append(f"{where}: {action}")
    assert offenders == []


def test_no_wildcard_actions() -> None:
    offenders = [
        f"{where}: {action}"
        for where, statement in statements()
        if statement.get("Effect") == "Allow"
        for action in _as_list(statement["Action"])
        if action == "*" or action.endswith(":*")
    ]
    assert offenders == []


def test_pass_role_is_always_scoped_to_a_service() -> None:
    offenders = []
    for where, statement in statements():
        if "iam:PassRole" in _as_list(statement.get("Action")):
            condition = statement.get("Condition", {})
            passed = {k: v for op in condition.values() for k, v in op.items()}
            if "iam:PassedToService" not in passed or "*" in _as_list(statement.get("Resource")):
                offenders.append(where)
    assert offenders == []


def test_only_narrow_aws_managed_policies_are_attached() -> None:
    attached = {
        arn
        for resource in template().resources.values()
        if resource["Type"] == "AWS::IAM::Role"
        for arn in resource["Properties"].get("ManagedPolicyArns", [])
        if isinstance(arn, str)
    }
    assert attached <= ALLOWED_MANAGED


@pytest.mark.parametrize("kind", ["AWS::S3::Bucket"])
def test_every_bucket_is_hardened(kind: str) -> None:
    resources = template().resources
    policies = {
        r["Properties"]["Bucket"]["Ref"]: r["Properties"]["PolicyDocument"]
        for r in resources.values()
        if r["Type"] == "AWS::S3::BucketPolicy"
    }
    for logical_id, bucket in resources.items():
        if bucket["Type"] != kind:
            continue
        props = bucket["Properties"]
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}, logical_id
        assert (
            all(props["PublicAccessBlockConfiguration"].values()) and len(props["PublicAccessBlockConfiguration"]) == 4
        )
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"], logical_id
        tls = [
            s
            for s in policies[logical_id]["Statement"]
            if s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") in (False, "false")
        ]
        assert tls and tls[0]["Effect"] == "Deny", f"{logical_id} has no TLS-only policy"


def test_every_queue_and_topic_is_encrypted_and_every_log_group_expires() -> None:
    for logical_id, resource in template().resources.items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::SQS::Queue":
            assert props.get("SqsManagedSseEnabled") or props.get("KmsMasterKeyId"), logical_id
        if resource["Type"] == "AWS::SNS::Topic":
            assert props.get("KmsMasterKeyId"), logical_id
        if resource["Type"] == "AWS::Logs::LogGroup":
            assert props.get("RetentionInDays"), logical_id


def test_every_function_logs_to_a_group_with_retention() -> None:
    resources = template().resources
    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::Lambda::Function":
            group = resource["Properties"].get("LoggingConfig", {}).get("LogGroup", {})
            assert isinstance(group, dict) and resources[group["Ref"]]["Type"] == "AWS::Logs::LogGroup", logical_id


def test_every_rule_target_has_a_dead_letter_queue_and_retry_policy() -> None:
    for logical_id, resource in template().resources.items():
        if resource["Type"] == "AWS::Events::Rule":
            for target in resource["Properties"].get("Targets", []):
                assert "DeadLetterConfig" in target, logical_id
                assert "RetryPolicy" in target, logical_id


def test_every_asynchronously_invoked_function_has_an_on_failure_destination() -> None:
    resources = template().resources
    invoked_by_rules = {
        target["Arn"]["Fn::GetAtt"][0]
        for r in resources.values()
        if r["Type"] == "AWS::Events::Rule"
        for target in r["Properties"].get("Targets", [])
        if isinstance(target["Arn"], dict)
        and "Fn::GetAtt" in target["Arn"]
        and resources.get(target["Arn"]["Fn::GetAtt"][0], {}).get("Type") == "AWS::Lambda::Function"
    }
    configured = {
        r["Properties"]["FunctionName"]["Ref"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::EventInvokeConfig"
        and r["Properties"].get("DestinationConfig", {}).get("OnFailure")
    }
    assert invoked_by_rules <= configured


def test_no_secret_or_key_material_in_function_environment() -> None:
    for logical_id, resource in template().resources.items():
        if resource["Type"] == "AWS::Lambda::Function":
            variables = resource["Properties"].get("Environment", {}).get("Variables", {})
            for name in variables:
                assert not any(word in name.upper() for word in ("PASSWORD", "SECRET_VALUE", "TOKEN", "PRIVATE")), (
                    logical_id,
                    name,
                )
