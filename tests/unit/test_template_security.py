"""Least privilege and hardening, checked on the CloudFormation the SAM template becomes."""

from __future__ import annotations

import json
import re
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
    """Every IAM statement: roles' inline policies, customer managed policies, standalone policies."""
    found = []
    for logical_id, resource in template().resources.items():
        documents: list[tuple[str, dict[str, Any]]] = []
        if resource["Type"] == "AWS::IAM::Role":
            documents = [(p["PolicyName"], p["PolicyDocument"]) for p in resource["Properties"].get("Policies", [])]
        elif resource["Type"] in {"AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"}:
            documents = [(resource["Type"].rsplit(":", 1)[1], resource["Properties"]["PolicyDocument"])]
        for name, document in documents:
            statement = document["Statement"]
            for item in statement if isinstance(statement, list) else [statement]:
                found.append((f"{logical_id}/{name}", item))
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
    # a function target is `!If [UseSnapStart, <its alias>, !GetAtt <Function>.Arn]` (the SnapStart option)
    invoked_by_rules = {
        target["Arn"]["Fn::If"][2]["Fn::GetAtt"][0]
        for r in resources.values()
        if r["Type"] == "AWS::Events::Rule"
        for target in r["Properties"].get("Targets", [])
        if isinstance(target["Arn"], dict) and "Fn::If" in target["Arn"]
    }
    assert invoked_by_rules and all(resources[f]["Type"] == "AWS::Lambda::Function" for f in invoked_by_rules)
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


# -- the stack's key -------------------------------------------------------------------------------

STACK_KEY = {"Ref": "StackKey"}
STACK_KEY_ARN = {"Fn::GetAtt": ["StackKey", "Arn"]}


def of_type(kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template().resources.items() if v["Type"] == kind}


def dead_letter_queues() -> set[str]:
    """Queues that receive what failed: redrive targets, rule and schedule DLQs, on-failure destinations."""
    found = set()
    for resource in template().resources.values():
        props = resource.get("Properties", {})
        arns = [props.get("RedrivePolicy", {}).get("deadLetterTargetArn")]
        arns += [t.get("DeadLetterConfig", {}).get("Arn") for t in props.get("Targets", [])]
        target = props.get("Target", {})
        arns += [target.get("DeadLetterConfig", {}).get("Arn") if isinstance(target, dict) else None]
        arns += [props.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")]
        found.update(arn["Fn::GetAtt"][0] for arn in arns if isinstance(arn, dict) and "Fn::GetAtt" in arn)
    return found


def test_topic_tables_log_groups_secret_and_environments_use_the_stack_key() -> None:
    encrypted = {
        "AWS::SNS::Topic": lambda p: p.get("KmsMasterKeyId"),
        "AWS::DynamoDB::Table": lambda p: p["SSESpecification"].get("KMSMasterKeyId"),
        "AWS::SecretsManager::Secret": lambda p: p.get("KmsKeyId"),
        "AWS::Logs::LogGroup": lambda p: p.get("KmsKeyId"),
        "AWS::Lambda::Function": lambda p: p.get("KmsKeyArn"),
    }
    seen = 0
    for kind, key_of in encrypted.items():
        for logical_id, resource in of_type(kind).items():
            assert key_of(resource["Properties"]) in (STACK_KEY, STACK_KEY_ARN), logical_id
            seen += 1
    assert seen >= 18  # 1 topic, 2 tables, 1 secret, 7 log groups, 7 functions
    for logical_id, table in of_type("AWS::DynamoDB::Table").items():
        assert table["Properties"]["SSESpecification"]["SSEType"] == "KMS", logical_id


def test_work_queues_use_the_stack_key_and_dead_letter_queues_sqs_managed_keys() -> None:
    # a dead-letter queue of last resort must not depend on the key whose failure may be why it is used
    last_resort = dead_letter_queues()
    assert last_resort == {"EventsDlq", "FunctionFailuresDlq", "DataArrivalDlq", "DeployModelDlq", "DriftScheduleDlq"}
    for logical_id, queue in of_type("AWS::SQS::Queue").items():
        props = queue["Properties"]
        if logical_id in last_resort:
            assert props.get("SqsManagedSseEnabled") is True and "KmsMasterKeyId" not in props, logical_id
        else:
            assert props.get("KmsMasterKeyId") == STACK_KEY, logical_id


def test_the_stack_key_rotates_and_its_policy_names_no_wildcard_principal() -> None:
    key = template().resources["StackKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    services = {}
    for statement in key["KeyPolicy"]["Statement"]:
        principal = statement["Principal"]
        assert principal != "*" and "*" not in _as_list(principal.get("AWS", [])), statement["Sid"]
        if "Service" in principal:
            services[json.dumps(principal["Service"])] = statement
    # a service gets only what it needs: Logs for the stack's log groups, EventBridge to send to a queue
    assert len(services) == 2
    for service, statement in services.items():
        if "logs" in service:
            assert "kms:EncryptionContext:aws:logs:arn" in statement["Condition"]["ArnLike"]
        else:
            assert json.loads(service) == "events.amazonaws.com"
            assert sorted(statement["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]


def test_every_role_that_uses_the_stack_key_names_it() -> None:
    for where, statement in statements():
        kms = [a for a in _as_list(statement.get("Action", [])) if a.startswith("kms:")]
        if kms and statement.get("Effect") == "Allow":
            assert statement["Resource"] == STACK_KEY_ARN, where


def test_every_bucket_logs_its_access_to_the_access_log_bucket() -> None:
    buckets = of_type("AWS::S3::Bucket")
    for logical_id, bucket in buckets.items():
        if logical_id == "AccessLogsBucket":
            # access logs are delivered only to a bucket with S3-managed keys, and never to themselves
            rules = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
            assert rules[0]["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
            assert "LoggingConfiguration" not in bucket["Properties"]
            continue
        logging = bucket["Properties"]["LoggingConfiguration"]
        assert logging["DestinationBucketName"] == {"Ref": "AccessLogsBucket"}, logical_id
        assert logging["LogFilePrefix"].endswith("/"), logical_id
    prefixes = [
        b["Properties"]["LoggingConfiguration"]["LogFilePrefix"] for k, b in buckets.items() if k != "AccessLogsBucket"
    ]
    assert len(prefixes) == len(set(prefixes))


# -- no secret or personal data in the functions' environment -----------------------------------------

PERSONAL_OR_SECRET = {
    "an email address": re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+"),
    "a phone number": re.compile(r"\+?\d[\d \-()]{8,}\d"),
    "an IBAN": re.compile(r"\b[A-Z]{2}\d{2}[A-Z0-9]{11,30}\b"),
    "key material": re.compile(r"[A-Za-z0-9+/_=-]{32,}"),
}


def test_no_secret_or_personal_data_in_function_environments() -> None:
    for logical_id, function in of_type("AWS::Lambda::Function").items():
        for name, value in function["Properties"].get("Environment", {}).get("Variables", {}).items():
            if any(word in name for word in ("SECRET", "KEY", "PASSWORD", "CREDENTIAL")):
                # a secret is passed by reference (its ARN), never by value
                assert name.endswith("_ARN") and isinstance(value, dict), (logical_id, name)
            if isinstance(value, str):
                for what, pattern in PERSONAL_OR_SECRET.items():
                    assert not pattern.search(value), (logical_id, name, what)
