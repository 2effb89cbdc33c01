"""CloudWatch alarm evaluation, locally (moto stores alarms and metrics but never evaluates them).

For each metric alarm of the stack: read the last `EvaluationPeriods` periods of its metric, count
breaching datapoints, and move the alarm to ALARM when at least `DatapointsToAlarm` breach (to OK
when none does; missing data per `TreatMissingData`). A state change is written to moto
(SetAlarmState) and published as AWS's `CloudWatch Alarm State Change` event.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from closedloop_ops.local.emitter import Emitter
from closedloop_ops.local.provision import LocalStack

COMPARE: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanThreshold": operator.gt,
    "GreaterThanOrEqualToThreshold": operator.ge,
    "LessThanThreshold": operator.lt,
    "LessThanOrEqualToThreshold": operator.le,
}


@dataclass
class Transition:
    alarm: str
    previous: str
    current: str
    value: float | None


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


class AlarmEvaluator:
    """Evaluates the stack's metric alarms on demand (the local stand-in for CloudWatch's engine)."""

    def __init__(self, stack: LocalStack, emitter: Emitter) -> None:
        self.stack = stack
        self.emitter = emitter

    def evaluate(self, now: datetime | None = None) -> list[Transition]:
        now = now or datetime.now(UTC)
        cloudwatch = self.stack.client("cloudwatch")
        transitions = []
        for alarm in cloudwatch.describe_alarms(AlarmTypes=["MetricAlarm"])["MetricAlarms"]:
            if not alarm.get("MetricName") or alarm["ComparisonOperator"] not in COMPARE:
                continue
            transition = self._evaluate(cloudwatch, alarm, now)
            if transition is not None:
                transitions.append(transition)
        return transitions

    def _evaluate(self, cloudwatch: Any, alarm: dict[str, Any], now: datetime) -> Transition | None:
        period = int(alarm.get("Period", 60))
        periods = int(alarm.get("EvaluationPeriods", 1))
        needed = int(alarm.get("DatapointsToAlarm") or periods)
        statistic = alarm.get("Statistic", "Maximum")
        points = cloudwatch.get_metric_statistics(
            Namespace=alarm["Namespace"],
            MetricName=alarm["MetricName"],
            Dimensions=alarm.get("Dimensions", []),
            StartTime=now - timedelta(seconds=period * periods),
            EndTime=now + timedelta(seconds=60),
            Period=period,
            Statistics=[statistic],
        )["Datapoints"]
        values = [p[statistic] for p in sorted(points, key=lambda p: p["Timestamp"])][-periods:]
        compare = COMPARE[alarm["ComparisonOperator"]]
        threshold = float(alarm["Threshold"])
        breaching = [v for v in values if compare(float(v), threshold)]
        previous = alarm.get("StateValue", "INSUFFICIENT_DATA")
        if values:
            state = "ALARM" if len(breaching) >= needed else "OK"
        else:
            missing = alarm.get("TreatMissingData", "missing")
            state = {"breaching": "ALARM", "notBreaching": "OK"}.get(missing, previous)
        if state == previous:
            return None
        verb = "was greater than" if state == "ALARM" else "was not greater than"
        reason = (
            f"Threshold Crossed: {len(breaching) if state == 'ALARM' else len(values)} out of the last "
            f"{len(values)} datapoints {[round(float(v), 6) for v in values]} {verb} the threshold ({threshold})."
            if values
            else "Threshold Crossed: no datapoints were received"
        )
        reason_data = json.dumps(
            {
                "version": "1.0",
                "queryDate": _timestamp(now),
                "startDate": _timestamp(now - timedelta(seconds=period * periods)),
                "statistic": statistic,
                "period": period,
                "recentDatapoints": [float(v) for v in values],
                "threshold": threshold,
            }
        )
        cloudwatch.set_alarm_state(
            AlarmName=alarm["AlarmName"], StateValue=state, StateReason=reason[:1023], StateReasonData=reason_data
        )
        previous_state = {
            "reason": alarm.get("StateReason", "Unchecked: Initial alarm creation"),
            "timestamp": _timestamp(alarm.get("StateUpdatedTimestamp", now)),
            "value": previous,
        }
        current_state = {"reason": reason, "reasonData": reason_data, "timestamp": _timestamp(now), "value": state}
        self.emitter.publish(self.emitter.alarm_state_change(alarm, previous=previous_state, current=current_state))
        return Transition(
            alarm=alarm["AlarmName"], previous=previous, current=state, value=float(values[-1]) if values else None
        )
