"""What EventBridge Scheduler sends to the drift monitor: the schedule's `Input`, with its
context attributes filled in.

The template's schedule target has exactly this Input (Scheduler replaces each
`<aws.scheduler.…>` keyword when it invokes the function)::

    {"action": "measure-drift",
     "line": "<the model line>",
     "schedule_arn": "<aws.scheduler.schedule-arn>",
     "scheduled_time": "<aws.scheduler.scheduled-time>",
     "execution_id": "<aws.scheduler.execution-id>",
     "attempt": "<aws.scheduler.attempt-number>"}
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError

from closedloop.errors import InvalidEventError
from closedloop.events.base import validation_problems
from closedloop.model import Model

SCHEDULER_CORRELATION = "execution_id"


class DriftMonitorRun(Model):
    """One scheduled run of the drift monitor."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: Literal["measure-drift"]
    line: str = Field(min_length=1, max_length=64)  # each line has its own schedule
    schedule_arn: str = Field(pattern=r"^arn:aws[a-z-]*:scheduler:[a-z0-9-]+:\d{12}:schedule/")
    scheduled_time: datetime
    execution_id: str = Field(min_length=1, max_length=128)
    attempt: int = Field(ge=1)


def parse_drift_run(event: dict[str, Any]) -> DriftMonitorRun:
    """Parse the scheduled invocation (plain pydantic: Scheduler sends the target's Input, no envelope).

    Raises:
        InvalidEventError: the payload is not the schedule's Input; `problems` says what did not fit.
    """
    try:
        run: DriftMonitorRun = DriftMonitorRun.model_validate(event)
    except ValidationError as exc:
        raise InvalidEventError("not the drift monitor schedule's input", problems=validation_problems(exc)) from None
    return run


def scheduler_input(
    target_input: str, *, schedule_arn: str, scheduled_time: datetime, execution_id: str, attempt: int = 1
) -> dict[str, Any]:
    """What Scheduler delivers for a target `Input`: its context attributes filled in.

    For whoever invokes the drift function the way Scheduler does (the local loop, tests).
    """
    filled = (
        target_input.replace("<aws.scheduler.schedule-arn>", schedule_arn)
        .replace("<aws.scheduler.scheduled-time>", scheduled_time.strftime("%Y-%m-%dT%H:%M:%SZ"))
        .replace("<aws.scheduler.execution-id>", execution_id)
        .replace("<aws.scheduler.attempt-number>", str(attempt))
    )
    document: dict[str, Any] = json.loads(filled)
    return document
