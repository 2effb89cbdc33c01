"""Which model group and pipeline an alarm stands for.

Only alarms of a model line retrain it: the line's three drift alarms (`<prefix>-<line>-drift-…`,
made per line by the template) and the alarms its file claims in `retraining.alarms` that the
operator lists in `ExtraAlarmNames` (e.g. a SageMaker Model Monitor alarm). The function is given
the settings of the alarm's line (`closedloop.line`); this module refuses any other alarm that
reaches it — a name prefix proves nothing (`<prefix>-lambda-errors`
shares it and says nothing about the model). An alarm tagged `closedloop:model-group` must name
this stack's group. Anything else is an error: the event goes to the dead-letter queue with the
reason, so a mis-wired alarm is seen, not silently dropped.

The rollout's endpoint health alarms (`<prefix>-endpoint-…`: 5xx, latency) say nothing about the
data: they roll a deployment back, and retraining would not fix them. Even when listed by mistake
they are recorded as a suppression and start nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import ConfigDict

from closedloop.errors import UnknownAlarmError
from closedloop.model import Model
from closedloop.settings import Settings

MODEL_GROUP_TAG = "closedloop:model-group"
OPERATIONAL_ALARMS = "endpoint-"  # after the prefix: the rollout's endpoint health alarms


class RetrainTarget(Model):
    """What an alarm retrains."""

    model_config = ConfigDict(frozen=True)

    model_group: str
    pipeline_name: str
    matched_by: Literal["stack", "name", "operational"]
    operational: bool = False


def resolve_alarm(alarm_name: str, tags: Mapping[str, str], settings: Settings) -> RetrainTarget:
    """Map an alarm to the model group and pipeline it retrains.

    Args:
        alarm_name: the alarm's name.
        tags: the alarm's tags (empty if it has none or they cannot be read).
        settings: the stack's settings (its drift alarms, extra alarm names, group, pipeline).

    Raises:
        UnknownAlarmError: the alarm is neither one of the stack's drift alarms nor listed in
            ExtraAlarmNames, or its `closedloop:model-group` tag names another group.
    """
    matched_by: Literal["stack", "name", "operational"]
    if alarm_name.startswith(settings.alarm_prefix + OPERATIONAL_ALARMS):
        matched_by = "operational"
    elif alarm_name in settings.retraining_alarm_names:
        matched_by = "stack"
    elif alarm_name in settings.extra_alarm_names:
        matched_by = "name"
    else:
        raise UnknownAlarmError(
            f"alarm {alarm_name!r} is not a retraining alarm of this stack: it is none of a deployed "
            f"line's drift alarms ({', '.join(settings.retraining_alarm_names) or 'no line owns it'}) "
            "and no line claims it (retraining.alarms, listed in ExtraAlarmNames)",
            alarm=alarm_name,
        )
    tagged = tags.get(MODEL_GROUP_TAG)
    if tagged is not None and tagged != settings.model_package_group:
        raise UnknownAlarmError(
            f"alarm {alarm_name!r} is tagged {MODEL_GROUP_TAG}={tagged!r}, "
            f"but this stack retrains {settings.model_package_group!r}",
            alarm=alarm_name,
            tagged_group=tagged,
        )
    return RetrainTarget(
        model_group=settings.model_package_group,
        pipeline_name=settings.pipeline_name,
        matched_by=matched_by,
        operational=matched_by == "operational",
    )


def trigger_reason(alarm_name: str, summary: Mapping[str, object]) -> str:
    """The recorded reason of an alarm-triggered retraining: alarm, metric, value and threshold."""
    parts = [alarm_name]
    metric = summary.get("metric")
    value = summary.get("value")
    threshold = summary.get("threshold")
    if metric is not None and isinstance(value, float):
        parts.append(f"{metric} = {value:.6g}")
    elif metric is not None:
        parts.append(str(metric))
    if isinstance(threshold, float):
        parts.append(f"threshold {threshold:.6g}")
    if summary.get("rule"):
        triggered = summary.get("triggered_by")
        by = f" (triggered by {', '.join(map(str, triggered))})" if isinstance(triggered, list) and triggered else ""
        parts.append(f"{summary['rule']}{by}")
    return "; ".join(parts)
