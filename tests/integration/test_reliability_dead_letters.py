"""Where an event ends when its target fails — and that `closedloop dlq` can read and redrive it.

On the local loop (moto provisioned from template.yaml, the real handlers): every rule target is
registered with the stack's EventBridge DLQ; a schedule whose function keeps failing lands in the
schedule's DLQ with Scheduler's attributes; a function that keeps failing after Lambda's retries
lands in the on-failure destination with Lambda's destination record; a rule-target failure as
EventBridge writes it is read and redriven to its target. The DLQ tooling
(`closedloop_ops.operations`) classifies each kind and names the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from closedloop.drift.monitor import DriftMonitor
from closedloop.errors import ClosedloopError
from closedloop_ops import synthetic
from closedloop_ops.local.loop import LocalLoop
from closedloop_ops.operations import peek, redrive
from closedloop_ops.stackref import StackRef


@pytest.fixture(scope="module")
def loop() -> Iterator[LocalLoop]:
    # An operator's alarm listed for retraining (route 6 takes it), used below with a wrong group tag
    with LocalLoop.start(
        stack_name="closedloop-dlq", parameters={"ExtraAlarmNames": "closedloop-drift-foreign"}
    ) as running:
        yield running


@pytest.fixture
def stack(loop: LocalLoop) -> StackRef:
    return StackRef(
        name=loop.stack.stack_name,
        region=loop.stack.region,
        outputs=loop.stack.outputs,
        endpoint_url=loop.stack.endpoint_url,
        local=True,
    )


def depth(loop: LocalLoop, output: str) -> int:
    attributes = loop.client("sqs").get_queue_attributes(
        QueueUrl=loop.output(output), AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def test_every_rule_target_is_registered_with_the_stacks_eventbridge_dlq(loop: LocalLoop) -> None:
    events = loop.client("events")
    dlq_arn = loop.client("sqs").get_queue_attributes(
        QueueUrl=loop.output("EventsDlqUrl"), AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    targets = [t for rule in loop.stack.rules for t in events.list_targets_by_rule(Rule=rule)["Targets"]]
    assert len(targets) == len(loop.stack.rules) >= 7
    assert {t.get("DeadLetterConfig", {}).get("Arn") for t in targets} == {dlq_arn}
    assert all(t["RetryPolicy"]["MaximumRetryAttempts"] >= 1 for t in targets)


def test_a_schedule_whose_function_keeps_failing_is_in_the_schedule_dlq_and_redriven(
    loop: LocalLoop, stack: StackRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: DriftMonitor, *args: object, **kwargs: object) -> None:
        raise ClosedloopError("capture bucket unreadable", retryable=True)

    # Given a drift run that fails on every attempt Scheduler makes
    with monkeypatch.context() as patch:
        patch.setattr(DriftMonitor, "handle", broken)
        invocation = loop.dispatcher.fire_schedule(loop.stack.schedules[0], at=datetime(2026, 11, 27, 10, tzinfo=UTC))
    assert invocation.error is not None
    # Then it is in the schedule's DLQ, and the tooling says which target failed and why
    [letter] = peek(stack, "DriftScheduleDlq")
    assert letter.kind == "eventbridge-target"
    assert letter.reason == "Lambda.FunctionError: ClosedloopError: capture bucket unreadable"
    assert letter.body["action"] == "measure-drift" and letter.body["scheduled_time"] == "2026-11-27T10:00:00Z"
    # And a redrive (the cause fixed) invokes the function again with the same input; the queue empties
    before = len(loop.dispatcher.invocations)
    assert redrive(stack, "DriftScheduleDlq").redriven == 1
    loop.settle()
    rerun = [i for i in loop.dispatcher.invocations[before:] if i.function == "DriftMonitorFunction"]
    assert [(i.error, i.result["result"]) for i in rerun] == [(None, "skipped")]
    assert depth(loop, "DriftScheduleDlqUrl") == 0


def test_a_function_failing_after_lambdas_retries_is_in_the_on_failure_destination_with_the_reason(
    loop: LocalLoop, stack: StackRef
) -> None:
    # Given an alarm listed in ExtraAlarmNames that no model line claims (and tagged for another group)
    cloudwatch = loop.client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName="closedloop-drift-foreign",
        Namespace="closedloop/Drift",
        MetricName="MaxFeaturePSI",
        Statistic="Maximum",
        Period=3600,
        EvaluationPeriods=1,
        Threshold=0.2,
        ComparisonOperator="GreaterThanThreshold",
        Tags=[{"Key": "closedloop:model-group", "Value": "someone-elses-models"}],
    )
    [alarm] = cloudwatch.describe_alarms(AlarmNames=["closedloop-drift-foreign"])["MetricAlarms"]
    # When its state change reaches the retraining function through the template's rule
    loop.emitter.publish(
        loop.emitter.alarm_state_change(
            alarm,
            previous={"value": "OK", "reason": "", "timestamp": "2026-11-27T09:02:10.901+0000"},
            current={"value": "ALARM", "reason": "Threshold Crossed", "timestamp": "2026-11-27T10:02:11.322+0000"},
        )
    )
    loop.settle()
    # Then after the first attempt and Lambda's two retries, Lambda's destination record is in the DLQ
    [letter] = [x for x in peek(stack, "FunctionFailuresDlq") if x.detail_type == "CloudWatch Alarm State Change"]
    assert (letter.kind, letter.event_source) == ("lambda-destination", "aws.cloudwatch")
    assert letter.reason.startswith("UnknownAlarmError: alarm 'closedloop-drift-foreign' is not a retraining alarm")
    assert letter.reason.endswith("(RetriesExhausted, 3 attempts)")
    assert letter.body["requestPayload"]["detail"]["alarmName"] == "closedloop-drift-foreign"


def test_a_rule_target_failure_as_eventbridge_writes_it_is_read_and_redriven_to_its_target(
    loop: LocalLoop, stack: StackRef
) -> None:
    # Given an upload whose delivery to the data-arrival queue failed (EventBridge's DLQ message format)
    s3 = loop.client("s3")
    bucket = loop.output("DataBucketName")
    s3.put_object(Bucket=bucket, Key="raw/loans/dlq/a.csv", Body=synthetic.to_csv(list(synthetic.rows(20))).encode())
    sqs = loop.client("sqs")
    arrival = loop.output("DataArrivalQueueUrl")
    [message] = sqs.receive_message(QueueUrl=arrival)["Messages"]  # the delivery that "failed"
    sqs.delete_message(QueueUrl=arrival, ReceiptHandle=message["ReceiptHandle"])
    queue_arn = sqs.get_queue_attributes(QueueUrl=arrival, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule_arn = next(
        loop.client("events").describe_rule(Name=name)["Arn"]
        for name, rule in loop.stack.rules.items()
        if rule["logical_id"] == "DataArrivalRule"
    )
    sqs.send_message(
        QueueUrl=loop.output("EventsDlqUrl"),
        MessageBody=message["Body"],
        MessageAttributes={
            name: {"DataType": "String", "StringValue": value}
            for name, value in {
                "RULE_ARN": rule_arn,
                "TARGET_ARN": queue_arn,
                "ERROR_CODE": "SQS.AccessDenied",
                "ERROR_MESSAGE": "the queue's key policy does not let EventBridge use the key",
                "EXHAUSTED_RETRY_CONDITION": "MaximumRetryAttempts",
                "RETRY_ATTEMPTS": "185",
            }.items()
        },
    )
    # Then the tooling names the kind and the reason
    [letter] = [x for x in peek(stack, "EventsDlq") if x.detail_type == "Object Created"]
    assert (letter.kind, letter.event_source) == ("eventbridge-target", "aws.s3")
    assert letter.reason == "SQS.AccessDenied: the queue's key policy does not let EventBridge use the key"
    # And the redrive delivers it to the target it failed to reach: the upload is prepared once
    jobs = len(loop.client("sagemaker").list_processing_jobs()["ProcessingJobSummaries"])
    assert redrive(stack, "EventsDlq").redriven == 1
    loop.settle()
    assert len(loop.client("sagemaker").list_processing_jobs()["ProcessingJobSummaries"]) == jobs + 1
    assert depth(loop, "EventsDlqUrl") == 0
