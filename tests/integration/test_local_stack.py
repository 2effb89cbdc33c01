"""The local loop's machinery on a moto server provisioned from template.yaml."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from closedloop.events.s3 import ObjectCreatedEvent
from closedloop_ops import synthetic
from closedloop_ops.local.loop import LocalLoop


@pytest.fixture(scope="module")
def loop() -> Iterator[LocalLoop]:
    with LocalLoop.start(stack_name="closedloop-it", services=False) as running:
        yield running


def test_every_template_resource_is_provisioned(loop: LocalLoop) -> None:
    from closedloop_ops.local.loop import ROOT
    from closedloop_ops.local.template import load_template

    declared = load_template(ROOT / "template.yaml").resources
    conditional = {k for k, v in declared.items() if "Condition" in v}
    assert set(declared) - conditional <= set(loop.stack.resources)
    # the functions run locally with the environment the template gives them
    function = loop.stack.functions["StartDataPrepFunction"]
    assert function.environment["DATA_BUCKET"] == loop.output("DataBucketName")
    assert function.environment["POWERTOOLS_SERVICE_NAME"] == "start_data_prep"


def test_uploads_flow_through_the_templates_rule_to_a_prepared_dataset(loop: LocalLoop) -> None:
    # Given three raw files uploaded to the data bucket
    s3 = loop.client("s3")
    bucket = loop.output("DataBucketName")
    records = list(synthetic.rows(150, seed=3))
    for index in range(3):
        s3.put_object(
            Bucket=bucket,
            Key=f"raw/loans/burst/part-{index}.csv",
            Body=synthetic.to_csv(records[index * 50 : (index + 1) * 50]).encode(),
        )
    # When the loop settles
    loop.settle()
    # Then one handler invocation took the batch and one Processing job ran the preparation
    invocations = [i for i in loop.dispatcher.invocations if i.function == "StartDataPrepFunction"]
    assert [(i.records, i.error) for i in invocations] == [(3, None)]
    assert [(r.kind, r.status) for r in loop.runner.records] == [("processing", "Completed")]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="prepared/loans/")["Contents"]]
    assert sorted(k.rsplit("/", 1)[1] for k in keys) == ["data.csv", "manifest.json", "pii_report.json"]
    data = s3.get_object(Bucket=bucket, Key=next(k for k in keys if k.endswith("data.csv")))["Body"].read().decode()
    assert all(value not in data for value in synthetic.pii_values(records))
    # And the job's end was published as AWS's event
    published = [e for e in loop.emitter.published if e["detail-type"] == "SageMaker Processing Job State Change"]
    assert published[-1]["detail"]["ProcessingJobStatus"] == "Completed"
    assert isinstance(published[-1]["detail"]["CreationTime"], int)


def test_an_alarm_crossing_its_threshold_publishes_a_state_change(loop: LocalLoop) -> None:
    cloudwatch = loop.client("cloudwatch")
    sqs = loop.client("sqs")
    events = loop.client("events")
    queue = sqs.create_queue(QueueName="alarm-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="alarm-watch", EventPattern=json.dumps({"source": ["aws.cloudwatch"]}))
    events.put_targets(Rule="alarm-watch", Targets=[{"Id": "q", "Arn": arn}])
    cloudwatch.put_metric_alarm(
        AlarmName="it-test-alarm",
        MetricName="Signal",
        Namespace="Test",
        Statistic="Maximum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching",
    )
    loop.alarms.evaluate()  # no data, notBreaching: OK
    assert cloudwatch.describe_alarms(AlarmNames=["it-test-alarm"])["MetricAlarms"][0]["StateValue"] == "OK"
    cloudwatch.put_metric_data(Namespace="Test", MetricData=[{"MetricName": "Signal", "Value": 5.0}])
    transitions = [t for t in loop.alarms.evaluate() if t.alarm == "it-test-alarm"]
    assert [(t.previous, t.current, t.value) for t in transitions] == [("OK", "ALARM", 5.0)]
    assert all(t.alarm != "it-test-alarm" for t in loop.alarms.evaluate())  # no change, no second event
    bodies = [json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]]
    alarm_event = next(b for b in bodies if b["detail"]["state"]["value"] == "ALARM")
    assert alarm_event["detail-type"] == "CloudWatch Alarm State Change"
    assert alarm_event["detail"]["previousState"]["value"] == "OK"
    assert json.loads(alarm_event["detail"]["state"]["reasonData"])["recentDatapoints"] == [5.0]


def test_s3_events_reaching_handlers_parse_as_real_events(loop: LocalLoop) -> None:
    sqs = loop.client("sqs")
    events = loop.client("events")
    queue = sqs.create_queue(QueueName="s3-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(
        Name="s3-watch",
        EventPattern=json.dumps({"source": ["aws.s3"], "detail": {"object": {"key": [{"prefix": "raw/other/"}]}}}),
    )
    events.put_targets(Rule="s3-watch", Targets=[{"Id": "q", "Arn": arn}])
    loop.client("s3").put_object(Bucket=loop.output("DataBucketName"), Key="raw/other/x.csv", Body=b"a\n")
    body = json.loads(sqs.receive_message(QueueUrl=queue)["Messages"][0]["Body"])
    assert ObjectCreatedEvent.model_validate(body).detail.reason == "PutObject"
    loop.settle()  # the data-arrival rule got it too: an unknown dataset, rejected, nothing started


def test_an_asynchronous_lambda_invoke_reaches_the_local_function(loop: LocalLoop) -> None:
    # Given a function as Lambda knows it (its configuration is the template's)
    function = loop.stack.functions["StartDataPrepFunction"]
    configuration = loop.client("lambda").get_function_configuration(FunctionName=function.name)
    assert configuration["Environment"]["Variables"]["DATA_BUCKET"] == loop.output("DataBucketName")
    # When it is invoked asynchronously (as a DLQ redrive does)
    before = len(loop.dispatcher.invocations)
    event = {"Records": []}
    response = loop.client("lambda").invoke(
        FunctionName=function.arn, InvocationType="Event", Payload=json.dumps(event)
    )
    assert response["StatusCode"] == 202
    loop.settle()
    # Then the dispatcher ran the real handler with that payload
    ran = loop.dispatcher.invocations[before:]
    assert [(i.function, i.error) for i in ran] == [("StartDataPrepFunction", None)]
