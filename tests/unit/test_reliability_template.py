"""The template's failure paths, on the CloudFormation the SAM template becomes: nothing is dropped silently.

Every function is reached either asynchronously (an EventBridge rule, a Scheduler schedule) and then
has an on-failure destination, or through an SQS queue that has a redrive policy; every rule and
schedule target has a dead-letter queue EventBridge may write to; every dead-letter queue is an
output, so `closedloop dlq` lists it; the functions that change the endpoint run one at a time.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from closedloop_ops.local.loop import ROOT
from closedloop_ops.local.template import Template, load_template

ENDPOINT_MUTATIONS = {
    "sagemaker:CreateEndpoint",
    "sagemaker:UpdateEndpoint",
    "sagemaker:DeleteEndpoint",
    "sagemaker:UpdateEndpointWeightsAndCapacities",
    "sagemaker:AddTags",
}


@cache
def template() -> Template:
    return load_template(ROOT / "template.yaml")


def resources(kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template().resources.items() if v["Type"] == kind}


def target_of(arn: Any) -> str | None:
    """The logical id an ARN property points at (`!GetAtt X.Arn`, `!Ref X`).

    An event source of the SnapStart option, `!If [UseSnapStart, !Ref <F>Aliaslive, <F>]`, points at
    the function `<F>` either way (its alias invokes it).
    """
    if isinstance(arn, dict) and "Fn::If" in arn:
        _, with_snapstart, without = arn["Fn::If"]
        alias, function = target_of(with_snapstart), target_of(without)
        spec = template().resources.get(str(alias), {})
        assert spec.get("Type") == "AWS::Lambda::Alias" and spec["Properties"]["FunctionName"] == {"Ref": function}
        return function
    if isinstance(arn, dict) and "Fn::GetAtt" in arn:
        return str(arn["Fn::GetAtt"][0])
    if isinstance(arn, dict) and "Ref" in arn:
        return str(arn["Ref"])
    return None


def asynchronously_invoked() -> dict[str, list[dict[str, Any]]]:
    """Function logical id → the rule and schedule targets that invoke it."""
    functions = resources("AWS::Lambda::Function")
    found: dict[str, list[dict[str, Any]]] = {}
    for rule in resources("AWS::Events::Rule").values():
        for target in rule["Properties"].get("Targets", []):
            if target_of(target["Arn"]) in functions:
                found.setdefault(str(target_of(target["Arn"])), []).append(target)
    for schedule in resources("AWS::Scheduler::Schedule").values():
        target = schedule["Properties"]["Target"]
        if target_of(target["Arn"]) in functions:
            found.setdefault(str(target_of(target["Arn"])), []).append(target)
    return found


def sqs_invoked() -> dict[str, str]:
    """Function logical id → the queue its event source mapping reads."""
    return {
        str(target_of(m["Properties"]["FunctionName"])): str(target_of(m["Properties"]["EventSourceArn"]))
        for m in resources("AWS::Lambda::EventSourceMapping").values()
    }


def test_every_function_is_reached_through_a_path_that_keeps_failed_events() -> None:
    functions = set(resources("AWS::Lambda::Function"))
    assert functions == set(asynchronously_invoked()) | set(sqs_invoked())


def test_every_asynchronously_invoked_function_has_an_on_failure_destination_and_bounded_retries() -> None:
    configs = {
        target_of(c["Properties"]["FunctionName"]): c["Properties"]
        for c in resources("AWS::Lambda::EventInvokeConfig").values()
    }
    for function in asynchronously_invoked():
        config = configs.get(function)
        assert config is not None, f"{function} has no EventInvokeConfig"
        destination = config["DestinationConfig"]["OnFailure"]["Destination"]
        assert template().resources[str(target_of(destination))]["Type"] == "AWS::SQS::Queue", function
        assert config["MaximumRetryAttempts"] == 2, function


def test_the_functions_may_write_their_failures_to_the_destination() -> None:
    functions = resources("AWS::Lambda::Function")
    for function in asynchronously_invoked():
        role = template().resources[str(target_of(functions[function]["Properties"]["Role"]))]
        granted = json.dumps(role["Properties"].get("Policies", []))
        assert "sqs:SendMessage" in granted and "FunctionFailuresDlq" in granted, function


def test_every_sqs_fed_function_reads_a_queue_with_a_dead_letter_queue() -> None:
    queues = resources("AWS::SQS::Queue")
    for function, queue in sqs_invoked().items():
        redrive = queues[queue]["Properties"].get("RedrivePolicy", {})
        assert target_of(redrive.get("deadLetterTargetArn")) in queues, (function, queue)
        assert redrive.get("maxReceiveCount"), (function, queue)


def test_every_rule_and_schedule_target_has_a_dead_letter_queue_and_a_retry_policy() -> None:
    for function, targets in asynchronously_invoked().items():
        for target in targets:
            assert target_of(target.get("DeadLetterConfig", {}).get("Arn")) in resources("AWS::SQS::Queue"), function
            assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1, function
    for rule_id, rule in resources("AWS::Events::Rule").items():
        for target in rule["Properties"]["Targets"]:
            assert target_of(target["DeadLetterConfig"]["Arn"]) == "EventsDlq", rule_id


def test_eventbridge_may_write_to_its_dead_letter_queue_from_every_rule_of_the_stack() -> None:
    [policy] = [
        p for p in resources("AWS::SQS::QueuePolicy").values() if {"Ref": "EventsDlq"} in p["Properties"]["Queues"]
    ]
    [statement] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"]["ArnLike"]["aws:SourceArn"] == {
        "Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/${AWS::StackName}-*"
    }
    # CloudFormation names a rule without a Name `<stack name>-<logical id>-<suffix>`: the condition matches
    assert all("Name" not in rule["Properties"] for rule in resources("AWS::Events::Rule").values())


def test_every_dead_letter_queue_is_an_output_the_dlq_tooling_lists() -> None:
    dead_letter_queues: set[str] = set()
    for queue in resources("AWS::SQS::Queue").values():
        dead_letter_queues.add(str(target_of(queue["Properties"].get("RedrivePolicy", {}).get("deadLetterTargetArn"))))
    for targets in asynchronously_invoked().values():
        dead_letter_queues.update(str(target_of(t["DeadLetterConfig"]["Arn"])) for t in targets)
    for config in resources("AWS::Lambda::EventInvokeConfig").values():
        dead_letter_queues.add(str(target_of(config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"])))
    dead_letter_queues.discard("None")
    outputs = template().cfn["Outputs"]
    assert dead_letter_queues == {
        "EventsDlq",
        "DataArrivalDlq",
        "FunctionFailuresDlq",
        "DeployModelDlq",
        "DriftScheduleDlq",
    }
    for queue in dead_letter_queues:
        assert outputs[f"{queue}Url"]["Value"] == {"Ref": queue}
        assert template().resources[queue]["Properties"]["MessageRetentionPeriod"] == 1209600  # 14 days, the most


def test_the_functions_that_change_the_endpoint_run_one_at_a_time() -> None:
    functions = resources("AWS::Lambda::Function")
    mutating = set()
    for logical_id, function in functions.items():
        role = template().resources[str(target_of(function["Properties"]["Role"]))]
        for policy in role["Properties"].get("Policies", []):
            statements = policy["PolicyDocument"]["Statement"]
            for statement in statements if isinstance(statements, list) else [statements]:
                actions = statement.get("Action", [])
                actions = actions if isinstance(actions, list) else [actions]
                if ENDPOINT_MUTATIONS & set(actions) and ":endpoint/" in json.dumps(statement.get("Resource")):
                    mutating.add(logical_id)
    assert mutating == {"DeployModelFunction", "RecordDeploymentFunction"}
    for logical_id in mutating:
        assert functions[logical_id]["Properties"].get("ReservedConcurrentExecutions") == 1, logical_id
