"""`aws.cloudwatch` / `CloudWatch Alarm State Change`, as EventBridge delivers it to route 6.

Single-metric, metric-math, anomaly-detection and composite alarms all arrive in this one shape;
only `configuration` differs (`metrics` with `metricStat` and/or `expression`, or `alarmRule`).
Two look-alikes are rejected: the payload an alarm's *Lambda action* sends (top-level `alarmArn`
and `alarmData`, no `detail-type`), and `CloudWatch Alarm Configuration Change` events.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator

from closedloop.errors import InvalidEventError
from closedloop.events.base import EventBridgeModel, validation_problems
from closedloop.model import Model

AlarmStateValue = Literal["OK", "ALARM", "INSUFFICIENT_DATA"]


class AlarmState(Model):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    value: AlarmStateValue
    reason: str = ""
    reason_data: str | None = Field(default=None, alias="reasonData")
    timestamp: str = Field(min_length=10)
    # Composite alarms with an actions suppressor: "Alarm", "WaitPeriod" or "ExtensionPeriod", and
    # CloudWatch's own sentence about it ("Actions suppressed by WaitPeriod").
    actions_suppressed_by: str | None = Field(default=None, alias="actionsSuppressedBy")
    actions_suppressed_reason: str | None = Field(default=None, alias="actionsSuppressedReason")

    @field_validator("timestamp")
    @classmethod
    def _is_a_time(cls, value: str) -> str:
        try:
            datetime.fromisoformat(value)  # "2019-10-02T17:04:40.989+0000"
        except ValueError:
            raise ValueError("not an ISO 8601 time") from None  # fromisoformat's message holds the value
        return value

    @property
    def at(self) -> datetime:
        """The state's time; a timestamp without a zone is taken as UTC (CloudWatch always sends one)."""
        at = datetime.fromisoformat(self.timestamp)
        return at if at.tzinfo is not None else at.replace(tzinfo=UTC)

    @property
    def actions_suppressed(self) -> bool:
        """CloudWatch suppressed this state's actions (a composite alarm's suppressor was active)."""
        return bool(self.actions_suppressed_by or self.actions_suppressed_reason)

    def reason_fields(self) -> dict[str, Any]:
        """`reasonData` (a JSON string) as a dict; empty when absent or not JSON."""
        if not self.reason_data:
            return {}
        try:
            data = json.loads(self.reason_data)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}


class AlarmMetricRef(Model):
    model_config = ConfigDict(frozen=True)

    namespace: str | None = None
    name: str
    dimensions: dict[str, str] = Field(default_factory=dict)


class AlarmMetricStat(Model):
    model_config = ConfigDict(frozen=True)

    metric: AlarmMetricRef
    period: int | None = None
    stat: str | None = None


class AlarmMetric(Model):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    id: str
    metric_stat: AlarmMetricStat | None = Field(default=None, alias="metricStat")
    expression: str | None = None
    label: str | None = None
    return_data: bool | None = Field(default=None, alias="returnData")


class AlarmConfiguration(Model):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    description: str | None = None
    metrics: list[AlarmMetric] = Field(default_factory=list)
    alarm_rule: str | None = Field(default=None, alias="alarmRule")


class AlarmStateChangeDetail(Model):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    alarm_name: str = Field(alias="alarmName", min_length=1, max_length=255)
    state: AlarmState
    previous_state: AlarmState | None = Field(default=None, alias="previousState")
    configuration: AlarmConfiguration = Field(default_factory=AlarmConfiguration)


class AlarmStateChangeEvent(EventBridgeModel):
    source: Literal["aws.cloudwatch"]
    detail_type: Literal["CloudWatch Alarm State Change"] = Field(alias="detail-type")
    detail: AlarmStateChangeDetail

    @property
    def alarm_arn(self) -> str | None:
        """The alarm's ARN (the event's only resource)."""
        return next((r for r in self.resources if ":alarm:" in r), None)

    @property
    def entered_alarm(self) -> bool:
        """The alarm moved INTO `ALARM` (from OK, INSUFFICIENT_DATA, or an unknown state)."""
        previous = self.detail.previous_state
        return self.detail.state.value == "ALARM" and (previous is None or previous.value != "ALARM")

    def trigger_summary(self) -> dict[str, Any]:
        """What made the alarm fire, for a trigger reason: metric, latest value, threshold.

        Composite alarms name their rule and the child alarms that triggered them instead.
        """
        detail = self.detail
        summary: dict[str, Any] = {}
        returned = [m for m in detail.configuration.metrics if m.return_data is not False]
        math_expression = next(
            (m for m in returned if m.expression and not m.expression.upper().startswith("ANOMALY_DETECTION_BAND")),
            None,
        )
        watched = next((m for m in returned if m.metric_stat is not None), None)
        if math_expression is not None:
            summary["metric"] = math_expression.label or math_expression.expression
        elif watched is not None and watched.metric_stat is not None:
            metric = watched.metric_stat.metric
            summary["metric"] = f"{metric.namespace} {metric.name}" if metric.namespace else metric.name
        reason = detail.state.reason_fields()
        datapoints = reason.get("recentDatapoints")
        if isinstance(datapoints, list) and datapoints and isinstance(datapoints[-1], int | float):
            summary["value"] = float(datapoints[-1])
        threshold = reason.get("threshold")
        if isinstance(threshold, int | float) and math.isfinite(threshold):
            summary["threshold"] = float(threshold)
        if detail.configuration.alarm_rule:
            summary["rule"] = detail.configuration.alarm_rule
            triggering = reason.get("triggeringAlarms")
            if isinstance(triggering, list):
                summary["triggered_by"] = [
                    str(t["arn"]).rsplit(":alarm:", 1)[-1] for t in triggering if isinstance(t, dict) and "arn" in t
                ]
        return summary


def parse_alarm_event(event: dict[str, Any]) -> AlarmStateChangeEvent:
    """Parse an EventBridge alarm state change (plain pydantic; the envelope as Powertools models it).

    Raises:
        InvalidEventError: not an alarm state change event (the alarm-action payload, a
            configuration change, another source); `problems` lists what did not fit.
    """
    try:
        parsed: AlarmStateChangeEvent = AlarmStateChangeEvent.model_validate(event)
    except ValidationError as exc:
        raise InvalidEventError(
            "not a CloudWatch Alarm State Change event from EventBridge", problems=validation_problems(exc)
        ) from None
    return parsed
