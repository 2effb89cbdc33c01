"""The alarm state change model against every shape CloudWatch sends through EventBridge, and the
look-alikes it must refuse (the Lambda alarm-action payload, configuration changes)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from closedloop.errors import InvalidEventError
from closedloop.events.cloudwatch import AlarmStateChangeEvent, parse_alarm_event
from closedloop.events.scheduler import DriftMonitorRun, parse_drift_run
from closedloop.retrain.mapping import trigger_reason
from support.events import load_event

ALARMS = Path(__file__).parents[1] / "data" / "alarms"


def sample(name: str) -> dict[str, Any]:
    return json.loads((ALARMS / f"{name}.json").read_text())


def test_the_route_sample_is_a_drift_alarm_entering_alarm() -> None:
    event = parse_alarm_event(load_event("alarm_state_change"))
    assert event.detail.alarm_name == "closedloop-loans-drift-features"
    assert event.alarm_arn == "arn:aws:cloudwatch:eu-west-1:111122223333:alarm:closedloop-loans-drift-features"
    assert event.entered_alarm
    assert event.detail.state.timestamp == "2026-11-27T10:02:11.322+0000"
    assert event.detail.state.at.isoformat() == "2026-11-27T10:02:11.322000+00:00"
    summary = event.trigger_summary()
    assert summary == {"metric": "closedloop/Drift MaxFeaturePSI", "value": 0.4127, "threshold": 0.2}
    assert trigger_reason(event.detail.alarm_name, summary) == (
        "closedloop-loans-drift-features; closedloop/Drift MaxFeaturePSI = 0.4127; threshold 0.2"
    )


@pytest.mark.parametrize(
    ("name", "metric", "previous"),
    [
        ("metric_math_insufficient_data_to_alarm", "Rejected share", "INSUFFICIENT_DATA"),
        ("anomaly_detection_ok_to_alarm", "closedloop/Quality MeanScore", "OK"),
        ("composite_with_suppressor_ok_to_alarm", None, "OK"),
    ],
)
def test_every_alarm_kind_arrives_in_one_shape(name: str, metric: str | None, previous: str) -> None:
    event = parse_alarm_event(sample(name))
    assert event.entered_alarm
    assert event.detail.previous_state is not None and event.detail.previous_state.value == previous
    summary = event.trigger_summary()
    assert summary.get("metric") == metric
    if name.startswith("composite"):
        assert summary["rule"].startswith("ALARM(closedloop-loans-drift-features)")
        assert summary["triggered_by"] == ["closedloop-loans-drift-predictions"]
        assert event.detail.state.actions_suppressed_by == "WaitPeriod"
        assert event.detail.state.actions_suppressed_reason == "Actions suppressed by WaitPeriod"
        assert event.detail.state.actions_suppressed
    else:
        assert isinstance(summary["value"], float)
        assert not event.detail.state.actions_suppressed


@pytest.mark.parametrize("name", ["lambda_action_payload", "configuration_change_update"])
def test_look_alikes_are_refused_with_the_reason(name: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        parse_alarm_event(sample(name))
    problems = caught.value.context["problems"]
    assert problems and all(set(p) == {"at", "problem"} for p in problems)
    assert "0.4127" not in json.dumps(caught.value.as_dict())  # never the event's values


def test_only_a_move_into_alarm_counts_as_entering_it() -> None:
    base = load_event("alarm_state_change")
    still = copy.deepcopy(base)
    still["detail"]["previousState"]["value"] = "ALARM"
    assert not parse_alarm_event(still).entered_alarm
    recovered = copy.deepcopy(base)
    recovered["detail"]["state"]["value"], recovered["detail"]["previousState"]["value"] = "OK", "ALARM"
    assert not parse_alarm_event(recovered).entered_alarm
    no_previous = copy.deepcopy(base)
    del no_previous["detail"]["previousState"]
    assert parse_alarm_event(no_previous).entered_alarm


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e.update({"source": "aws.sagemaker"}),
        lambda e: e["detail"]["state"].update({"value": "PENDING"}),
        lambda e: e["detail"]["state"].update({"timestamp": "yesterday afternoon"}),
        lambda e: e["detail"].update({"alarmName": ""}),
        lambda e: e.pop("detail"),
    ],
    ids=["source", "state", "timestamp", "empty-name", "no-detail"],
)
def test_broken_alarm_events_are_refused(mutate: Any) -> None:
    event = load_event("alarm_state_change")
    mutate(event)
    with pytest.raises(InvalidEventError):
        parse_alarm_event(event)


def test_the_model_is_an_eventbridge_envelope() -> None:
    from closedloop.events.base import EventBridgeModel

    assert issubclass(AlarmStateChangeEvent, EventBridgeModel)


def test_the_schedule_sample_is_what_scheduler_sends() -> None:
    run = parse_drift_run(load_event("drift_monitor_schedule"))
    assert isinstance(run, DriftMonitorRun)
    assert (run.action, run.attempt, run.execution_id) == ("measure-drift", 1, "c7b2e9f4a1d35806")
    assert run.scheduled_time.isoformat() == "2026-11-27T10:00:00+00:00"
    # an EventBridge event, an unfilled placeholder or an extra key is not the schedule's input
    for broken in (
        load_event("alarm_state_change"),
        {**load_event("drift_monitor_schedule"), "scheduled_time": "<aws.scheduler.scheduled-time>"},
        {**load_event("drift_monitor_schedule"), "endpoint": "someone-elses"},
    ):
        with pytest.raises(InvalidEventError):
            parse_drift_run(broken)
