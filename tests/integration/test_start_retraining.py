"""Route 6 on moto: alarm state changes → the template's rules → start_retraining → one pipeline run."""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from closedloop import ledger_keys
from closedloop.errors import UnknownAlarmError
from closedloop.events.cloudwatch import parse_alarm_event
from closedloop.ledger import Ledger
from closedloop.training.requests import client_request_token
from closedloop_ops.local.intrinsics import Resolver
from closedloop_ops.local.template import load_template
from closedloop_ops.moto_ext.monitoring import finish_pipeline_execution
from support.handlers import FakeLambdaContext, invoke, load_handler
from support.stack import ACCOUNT, REGION, Stack
from support.worlds import PREPARED, alarm_event, retraining_world

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "alarms"


@pytest.fixture(autouse=True)
def _fresh_metrics() -> Iterator[None]:
    """Metrics of domain calls made without a handler must not leak into another test's flush."""
    from closedloop.observability import metrics

    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


@pytest.fixture
def world(stack: Stack) -> Stack:
    return retraining_world(stack)


def ledger(stack: Stack, clock: Any = None) -> Ledger:
    if clock is None:
        return Ledger(stack.settings.ledger_table, boto3.client("dynamodb"))
    return Ledger(stack.settings.ledger_table, boto3.client("dynamodb"), clock=clock)


def executions() -> list[dict[str, Any]]:
    sm = boto3.client("sagemaker")
    return sm.list_pipeline_executions(PipelineName="closedloop-training")["PipelineExecutionSummaries"]


def emitted(capsys: pytest.CaptureFixture[str]) -> Counter[str]:
    """Metrics the handlers flushed (Powertools writes CloudWatch EMF lines to stdout)."""
    counts: Counter[str] = Counter()
    for line in capsys.readouterr().out.splitlines():
        if '"_aws"' not in line:
            continue
        document = json.loads(line)
        for name in ("RetrainingsStarted", "RetrainingsSuppressed", "AlarmsRejected"):
            if name in document:
                value = document[name]
                counts[name] += int(sum(value) if isinstance(value, list) else value)
    return counts


def test_an_alarm_entering_alarm_starts_the_pipeline_once(world: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    handler = load_handler("start_retraining")
    now = datetime.now(UTC)
    event = alarm_event(at=now)
    # When the alarm's state change arrives
    outcome = invoke(handler, event)
    # Then the pipeline runs on the latest prepared data, with the alarm as the recorded trigger
    assert outcome["result"] == "started"
    [execution] = executions()
    assert execution["PipelineExecutionStatus"] == "Executing"
    assert outcome["execution_arn"] == execution["PipelineExecutionArn"]
    sm = boto3.client("sagemaker")
    parameters = {
        p["Name"]: p["Value"]
        for p in sm.list_pipeline_parameters_for_execution(PipelineExecutionArn=execution["PipelineExecutionArn"])[
            "PipelineParameters"
        ]
    }
    assert parameters["InputDataUri"] == PREPARED["data_uri"]
    assert parameters["PrepRunId"] == "run-7"
    assert parameters["TriggerKind"] == "alarm"
    assert parameters["TriggerReason"] == (
        "closedloop-loans-drift-features; closedloop/Drift MaxFeaturePSI = 0.4127; threshold 0.2"
    )
    token = client_request_token("alarm", "closedloop-loans-drift-features", event["detail"]["state"]["timestamp"])
    assert execution["PipelineExecutionDisplayName"] == f"alarm-{token[:12]}"
    # And the lock is bound to it, the cooldown runs, the decision and the metric are recorded
    records = ledger(world)
    lock = records.get_lock("retrain#closedloop-loans")
    assert lock is not None and lock.execution_arn == execution["PipelineExecutionArn"]
    cooldown = records.get_state(ledger_keys.cooldown("closedloop-loans"))
    assert cooldown is not None and cooldown["execution_arn"] == execution["PipelineExecutionArn"]
    key = f"alarm:closedloop-loans-drift-features@{event['detail']['state']['timestamp']}"
    [decision] = records.decisions_for(key)
    assert (decision.route, decision.action, decision.result) == ("alarm", "start_retraining", "started")
    assert decision.details["metric"] == "closedloop/Drift MaxFeaturePSI"
    assert emitted(capsys)["RetrainingsStarted"] == 1
    # And the same event delivered again (with a new envelope id) changes nothing
    again = {**event, "id": str(uuid.uuid4())}
    assert invoke(handler, again) == outcome
    assert len(executions()) == 1


def test_an_alarm_flapping_ten_times_within_the_cooldown_retrains_once(
    world: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = load_handler("start_retraining")
    # (state times within the last hour: older ones would be refused as stale)
    start = datetime.now(UTC) - timedelta(minutes=55)
    outcomes = []
    for flap in range(10):
        at = start + timedelta(minutes=5 * flap)
        outcomes.append(invoke(handler, alarm_event(at=at)))
        outcomes.append(invoke(handler, alarm_event(at=at + timedelta(minutes=2), state="OK", previous="ALARM")))
        if flap == 1:  # the retraining ended meanwhile; route 3 released the lock
            arn = executions()[0]["PipelineExecutionArn"]
            finish_pipeline_execution(ACCOUNT, REGION, arn, "Succeeded")
            ledger(world).release_lock(
                "retrain#closedloop-loans", ledger(world).get_lock("retrain#closedloop-loans").holder
            )  # type: ignore[union-attr]
    # Then one retraining, and every other state change is a recorded suppression with its reason
    assert len(executions()) == 1
    reasons = Counter(o["suppressed_because"] for o in outcomes if o["result"] == "suppressed")
    assert sum(o["result"] == "started" for o in outcomes) == 1
    assert reasons == {"not-entering-alarm": 10, "cooldown": 9}
    metrics = emitted(capsys)
    assert (metrics["RetrainingsStarted"], metrics["RetrainingsSuppressed"]) == (1, 19)


def test_twenty_alarms_for_one_model_at_once_start_exactly_one_execution(world: Stack) -> None:
    handler = load_handler("start_retraining")
    now = datetime.now(UTC)
    names = ["closedloop-loans-drift-features", "closedloop-loans-drift-predictions", "closedloop-loans-drift-bias"]
    events = [parse_alarm_event(alarm_event(names[i % 3], at=now + timedelta(milliseconds=i))) for i in range(20)]
    handler.retrainings["loans"].register_lambda_context(FakeLambdaContext())
    barrier = threading.Barrier(len(events))
    results: list[Any] = []
    errors: list[BaseException] = []

    def handle(event: Any) -> None:
        barrier.wait()
        try:
            results.append(handler.retrainings["loans"].handle(event))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=handle, args=(event,)) for event in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly one execution, one started decision and nineteen suppressions
    assert errors == []
    assert len(executions()) == 1
    assert sorted(r.result for r in results).count("started") == 1
    assert {r.suppressed_because for r in results if r.result == "suppressed"} <= {
        "retraining-running",
        "pipeline-running",
        "cooldown",
    }
    decisions = [d for d in ledger(world).decisions_since(now - timedelta(minutes=1)) if d.route == "alarm"]
    assert Counter(d.result for d in decisions) == {"started": 1, "suppressed": 19}


def test_a_lock_whose_holder_died_is_reclaimed_after_the_lease(world: Stack) -> None:
    handler = load_handler("start_retraining")
    now = datetime.now(UTC)
    lease = timedelta(seconds=world.settings.pipeline_max_runtime_s)
    # Given a holder that took the lock and died, long enough ago that its lease ran out
    ledger(world, clock=lambda: now - lease - timedelta(minutes=1)).acquire_lock(
        "retrain#closedloop-loans", "alarm:crashed@earlier", lease, reason="crashed"
    )
    # Then the next alarm takes the lock over and retrains
    assert invoke(handler, alarm_event(at=now))["result"] == "started"
    lock = ledger(world).get_lock("retrain#closedloop-loans")
    assert lock is not None and lock.holder.startswith("alarm:closedloop-loans-drift-features@")


def test_a_lock_still_in_its_lease_suppresses(world: Stack) -> None:
    handler = load_handler("start_retraining")
    now = datetime.now(UTC)
    lease = timedelta(seconds=world.settings.pipeline_max_runtime_s)
    ledger(world).acquire_lock("retrain#closedloop-loans", "alarm:busy@now", lease, reason="busy")
    outcome = invoke(handler, alarm_event(at=now))
    assert (outcome["result"], outcome["suppressed_because"]) == ("suppressed", "retraining-running")
    assert executions() == []


def test_an_alarm_of_no_model_is_a_clear_error_for_the_dlq(world: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    handler = load_handler("start_retraining")
    event = alarm_event("payments-api-latency", at=datetime.now(UTC))
    # When an alarm this stack does not own reaches the function
    with pytest.raises(UnknownAlarmError) as caught:
        invoke(handler, event)
    # Then the error says why, is not retryable, and is recorded; nothing started
    assert "payments-api-latency" in caught.value.message and "ExtraAlarmNames" in caught.value.message
    assert not caught.value.retryable
    [decision] = ledger(world).decisions_for(f"alarm:payments-api-latency@{event['detail']['state']['timestamp']}")
    assert decision.result == "rejected"
    assert executions() == []
    assert emitted(capsys)["AlarmsRejected"] == 1
    # And an alarm-action payload or a configuration change is refused before any decision
    for name in ("lambda_action_payload", "configuration_change_update"):
        with pytest.raises(Exception, match="not a CloudWatch Alarm State Change"):
            invoke(handler, json.loads((DATA / f"{name}.json").read_text()))


def test_no_prepared_data_is_recorded_not_dropped(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    handler = load_handler("start_retraining")
    event = alarm_event(at=datetime.now(UTC))
    outcome = invoke(handler, event)
    assert (outcome["result"], outcome["suppressed_because"]) == ("suppressed", "no-prepared-data")
    [decision] = ledger(stack).decisions_for(
        f"alarm:closedloop-loans-drift-features@{event['detail']['state']['timestamp']}"
    )
    assert decision.reason.startswith("no prepared data")
    assert emitted(capsys)["RetrainingsSuppressed"] == 1


# -- what the template declares as "the model drifted" -----------------------------------------------


def suppressed_composite(name: str, at: datetime) -> dict[str, Any]:
    """AWS's published composite-alarm sample (`actionsSuppressedBy: WaitPeriod`), renamed to `name`, at `at`."""
    event: dict[str, Any] = json.loads((DATA / "composite_with_suppressor_ok_to_alarm.json").read_text())
    event["id"], event["account"], event["region"] = str(uuid.uuid4()), ACCOUNT, REGION
    event["resources"] = [f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{name}"]
    event["detail"]["alarmName"] = name
    event["detail"]["state"]["timestamp"] = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}+0000"
    return event


def test_a_suppressed_composite_alarm_is_recorded_and_starts_nothing(
    world: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = load_handler("start_retraining")
    # Given the published composite-alarm state change whose actions CloudWatch suppressed (WaitPeriod),
    # named as one of this stack's drift alarms, entering ALARM just now
    event = suppressed_composite("closedloop-loans-drift-predictions", datetime.now(UTC))
    assert event["detail"]["state"]["actionsSuppressedBy"] == "WaitPeriod"
    # When it reaches the function
    outcome = invoke(handler, event)
    # Then nothing starts, and the ledger says it was suppressed and why (CloudWatch's reason, no values)
    assert (outcome["result"], outcome["suppressed_because"]) == ("suppressed", "actions-suppressed")
    assert executions() == []
    [decision] = ledger(world).decisions_for(
        f"alarm:closedloop-loans-drift-predictions@{event['detail']['state']['timestamp']}"
    )
    assert decision.result == "suppressed"
    assert decision.details["suppressed_because"] == "actions-suppressed"
    assert decision.details["actions_suppressed_by"] == "WaitPeriod"
    assert "Actions suppressed by WaitPeriod" in decision.reason
    assert ledger(world).get_lock("retrain#closedloop-loans") is None
    assert emitted(capsys)["RetrainingsSuppressed"] == 1


def test_an_alarm_of_this_stack_that_is_not_declared_as_drift_never_retrains(
    world: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = load_handler("start_retraining")
    # Given an operational alarm that shares the stack's name prefix (AWS/Lambda Errors)
    boto3.client("cloudwatch").put_metric_alarm(
        AlarmName="closedloop-lambda-errors",
        Namespace="AWS/Lambda",
        MetricName="Errors",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    event = alarm_event("closedloop-lambda-errors", at=datetime.now(UTC))
    # When its entry into ALARM reaches the function anyway
    with pytest.raises(UnknownAlarmError) as caught:
        invoke(handler, event)
    # Then it is refused as not a retraining alarm of this stack, recorded, and starts nothing
    assert "not a retraining alarm of this stack" in caught.value.message
    assert not caught.value.retryable
    [decision] = ledger(world).decisions_for(f"alarm:closedloop-lambda-errors@{event['detail']['state']['timestamp']}")
    assert decision.result == "rejected"
    assert executions() == []
    assert emitted(capsys)["AlarmsRejected"] == 1
    # And the endpoint health alarms, prefixed too, are recorded suppressions that start nothing
    for name in ("closedloop-loans-endpoint-5xx", "closedloop-loans-endpoint-latency"):
        outcome = invoke(handler, alarm_event(name, at=datetime.now(UTC)))
        assert (outcome["result"], outcome["suppressed_because"]) == ("suppressed", "operational-alarm")
    assert executions() == []


@pytest.mark.parametrize(
    ("age", "code", "says"),
    [
        (timedelta(days=3 * 365), "stale-event", "MaxAlarmAgeSeconds"),
        (timedelta(hours=1, seconds=1), "stale-event", "older than 3600 s"),
        (-timedelta(days=1), "future-event", "ahead of this function's clock"),
    ],
)
def test_an_alarm_state_too_old_or_from_the_future_is_refused_and_recorded(
    world: Stack, age: timedelta, code: str, says: str
) -> None:
    handler = load_handler("start_retraining")
    # Given a drift alarm's entry into ALARM whose state time lies outside the accepted window
    event = alarm_event(at=datetime.now(UTC) - age)
    # When it reaches the function (a replay, a redrive long after, a forged event)
    outcome = invoke(handler, event)
    # Then nothing starts, and the ledger names the age (or lead) and the limit
    assert (outcome["result"], outcome["suppressed_because"]) == ("suppressed", code)
    assert executions() == []
    [decision] = ledger(world).decisions_for(
        f"alarm:closedloop-loans-drift-features@{event['detail']['state']['timestamp']}"
    )
    assert decision.result == "suppressed" and decision.details["suppressed_because"] == code
    assert says in decision.reason
    assert ledger(world).get_lock("retrain#closedloop-loans") is None


def test_an_alarm_state_within_the_limit_still_retrains(world: Stack) -> None:
    # Given a drift alarm that entered ALARM 50 minutes ago (delivery was retried meanwhile)
    event = alarm_event(at=datetime.now(UTC) - timedelta(minutes=50))
    # Then it starts the retraining
    assert invoke(load_handler("start_retraining"), event)["result"] == "started"
    assert len(executions()) == 1


# -- the template's rule, routed by EventBridge (moto) ---------------------------------------------


def route(stack: Stack, extra_names: str, events: list[dict[str, Any]]) -> list[str]:
    """Put the template's retrain rule on a bus, send events, return the names delivered."""
    template = load_template(ROOT / "template.yaml", region=REGION)
    values = {name: spec.get("Default") for name, spec in template.parameters.items()}
    values["ExtraAlarmNames"] = extra_names
    resolver: Resolver

    def ref(logical_id: str) -> Any:  # an alarm's Ref is its name
        return resolver.resolve(template.resources[logical_id]["Properties"]["AlarmName"])

    resolver = Resolver(
        parameters=values,
        pseudo={"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws"},
        mappings={},
        conditions=template.cfn.get("Conditions", {}),
        ref=ref,
        get_att=lambda *args: "arn",
    )
    sqs = boto3.client("sqs")
    bus = boto3.client("events")
    queue = sqs.create_queue(QueueName=f"retrain-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rules = [
        logical_id
        for logical_id, spec in template.resources.items()
        if spec["Type"] == "AWS::Events::Rule" and logical_id.startswith("StartRetrainingFunction")
    ]
    for logical_id in rules:
        pattern = resolver.resolve(template.resources[logical_id]["Properties"]["EventPattern"])
        rule = f"{logical_id}-{queue[-8:]}"
        bus.put_rule(Name=rule, EventPattern=json.dumps(pattern))
        bus.put_targets(Rule=rule, Targets=[{"Id": "queue", "Arn": queue_arn}])
    for first in range(0, len(events), 10):  # PutEvents takes at most 10 entries
        bus.put_events(
            Entries=[
                {
                    "Source": e["source"],
                    "DetailType": e["detail-type"],
                    "Detail": json.dumps(e["detail"]),
                    "Resources": e["resources"],
                }
                for e in events[first : first + 10]
            ]
        )
    delivered = []
    while messages := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            delivered.append(json.loads(message["Body"])["detail"]["alarmName"])
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    return sorted(delivered)


def test_the_rule_delivers_entries_of_the_declared_alarms_only(stack: Stack) -> None:
    now = datetime.now(UTC)
    samples = {
        name: json.loads((DATA / f"{name}.json").read_text())
        for name in (
            "metric_math_insufficient_data_to_alarm",
            "anomaly_detection_ok_to_alarm",
            "composite_with_suppressor_ok_to_alarm",
            "configuration_change_update",
        )
    }
    events = [
        alarm_event(at=now),
        alarm_event("closedloop-loans-drift-predictions", at=now),
        alarm_event("closedloop-loans-drift-bias", at=now),
        alarm_event(at=now, state="OK", previous="ALARM"),
        alarm_event(at=now, state="INSUFFICIENT_DATA"),
        alarm_event("closedloop-lambda-errors", at=now),
        alarm_event("closedloop-loans-endpoint-5xx", at=now),
        alarm_event("mm-quality-violations", at=now),
        alarm_event("someone-elses-alarm", at=now),
        *samples.values(),
    ]
    drift = ["closedloop-loans-drift-bias", "closedloop-loans-drift-features", "closedloop-loans-drift-predictions"]
    # Without extra names: the three drift alarms entering ALARM, nothing else — not another alarm
    # that merely shares the prefix (Lambda errors, endpoint health, other kinds named closedloop-…)
    assert route(stack, "", events) == drift
    # With extra names listed: those too, by exact name, of any alarm kind
    listed = route(stack, "mm-quality-violations,closedloop-model-quality,closedloop-drift-any", events)
    assert listed == sorted([*drift, "mm-quality-violations", "closedloop-model-quality", "closedloop-drift-any"])
    assert "someone-elses-alarm" not in route(stack, "mm-quality-violations", events)
