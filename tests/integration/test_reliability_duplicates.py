"""Duplicate deliveries the route suites do not already cover: each event type has one side effect.

(The others are in the route suites; `docs/reliability.md` lists every event type with its test.)
"""

from __future__ import annotations

import copy

import boto3
import pytest

from closedloop import aws
from support.faults import counting
from support.handlers import invoke, load_handler
from support.rollout import Rollout, provision_rollout
from support.stack import REGION, Stack
from support.training import create_pipeline, glue_event, prepared_run, start_glue_run
from support.worlds import drift_datapoints, drift_world, ledger, pipeline_executions, schedule_event, watermark


def test_a_glue_job_state_change_delivered_three_times_starts_one_execution(stack: Stack) -> None:
    create_pipeline()
    handler = load_handler("start_training")
    run = prepared_run(stack)
    event = glue_event(start_glue_run(run))
    # When EventBridge delivers the run's end three times, once with a new envelope id
    outcomes = [
        invoke(handler, e, remaining_ms=600_000) for e in (event, copy.deepcopy(event), {**event, "id": "re-emitted"})
    ]
    # Then one execution, which every answer names; one decision
    [execution] = pipeline_executions(stack)
    assert {o["execution_arn"] for o in outcomes} == {execution["PipelineExecutionArn"]}
    assert [d.result for d in ledger(stack).decisions_for(f"run:loans/{run.run_id}")] == ["started"]


def test_a_rejection_of_the_live_version_delivered_twice_rolls_back_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    world: Rollout = provision_rollout(stack, monkeypatch)
    for _ in range(2):
        arn = world.register()
        world.set_status(arn, "Approved")
        world.deliver(world.event(arn))
        world.outcome()
    v2 = world.versions[2]
    world.set_status(v2, "Rejected")
    rejection = world.event(v2)
    world.notifications()
    sagemaker = world.deploy.approvals._rollouts["loans"]._hosting._sagemaker
    # When the rejection arrives twice, and once more re-emitted with a new id
    with counting(sagemaker, "UpdateEndpoint") as calls:
        for delivery in (rejection, rejection, {**rejection, "id": "re-emitted"}):
            assert world.deliver(delivery)["batchItemFailures"] == []
    # Then one rollback to v1, one notification about it
    assert calls.calls["UpdateEndpoint"] == 1
    assert world.serving_version() == 1
    assert [(d.action, d.result) for d in world.decisions(2)].count(("rollback", "deploying")) == 1
    assert sum("Rolling back" in n["subject"] for n in world.notifications()) == 1


def test_a_deployment_state_change_delivered_twice_records_one_outcome(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    world: Rollout = provision_rollout(stack, monkeypatch)
    world.live()
    v2 = world.approved()
    world.deliver(world.event(v2))
    done = world.endpoint_event("SageMaker Endpoint Deployment State Change")
    tags = world.record.recorders["loans"]._registry._sagemaker
    # When the blue/green deployment's completion arrives twice, and the endpoint's own state change too
    with counting(tags, "AddTags") as calls:
        results = [world.outcome(e)["result"] for e in (done, copy.deepcopy(done), world.endpoint_event())]
    # Then v2 is recorded live once; the repeats find nothing new
    assert results == ["live", "unchanged", "unchanged"]
    assert [d.result for d in world.decisions(2) if d.action == "record_outcome"] == ["live"]
    assert calls.calls["AddTags"] == 3  # v2 live, v1 superseded, the endpoint's lineage: once each


def test_a_schedule_delivered_twice_publishes_once(stack: Stack) -> None:
    drift_world(stack)
    handler = load_handler("drift_monitor")
    event = schedule_event()
    # When Scheduler delivers the same execution twice (and its retry attempt a third time)
    with counting(aws.cloudwatch(), "PutMetricData") as calls:
        results = [
            invoke(handler, e, remaining_ms=600_000) for e in (event, copy.deepcopy(event), schedule_event(attempt=2))
        ]
    # Then the traffic is measured and published once; the repeats find nothing new past the watermark
    assert [r["result"] for r in results] == ["published", "insufficient-records", "insufficient-records"]
    assert [r["records"] for r in results] == [600, 0, 0]
    assert drift_datapoints(stack) == 1
    assert calls.calls["PutMetricData"] >= 1
    mark = watermark(stack)
    assert mark is not None and mark["variants"] == results[0]["watermark"]
    assert boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=stack.settings.capture_bucket)["KeyCount"] == 1
