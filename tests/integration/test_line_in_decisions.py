"""Every decision and notification of a route working for a model line names the line (`line`).

Through the handlers on moto: route 3 (decisions and notifications) for the loans and churn lines
and for an execution of no line, route 6 (decisions only) for the loans line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from closedloop.ledger import RecordedDecision
from closedloop_ops.moto_ext.pipelines import record_execution_step
from support.handlers import invoke, load_handler
from support.stack import ACCOUNT, REGION, Stack, notification_inbox
from support.training import create_pipeline, pipeline_event, prepared_run, register_version, start_execution
from support.worlds import alarm_event, ledger, retraining_world

Inbox = Callable[[], list[dict[str, Any]]]


@pytest.fixture(autouse=True)
def _fresh_metrics() -> Iterator[None]:
    """Metrics of domain calls made without a handler must not leak into another test's flush."""
    from closedloop.observability import metrics

    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


def decisions_of(stack: Stack, route: str, since: datetime) -> list[RecordedDecision]:
    return [d for d in ledger(stack).decisions_since(since) if d.route == route]


def test_the_gate_names_the_line_of_the_execution_in_every_decision_and_notification(stack: Stack) -> None:
    # Given the shared pipeline, a loans execution that registered a good version, a failed churn
    # execution, and a failed execution of a group no deployed line owns
    since = datetime.now(UTC) - timedelta(minutes=1)
    inbox: Inbox = notification_inbox(stack.settings, "line-inbox")
    create_pipeline()
    gate = load_handler("approval_gate")
    loans = start_execution()
    arn = register_version(stack, loans, prepared=prepared_run(stack))
    record_execution_step(ACCOUNT, REGION, loans, name="Register", metadata={"RegisterModel": {"Arn": arn}})
    churn = start_execution(group="closedloop-churn")
    nobody = start_execution(group="closedloop-nobody")
    # When the three executions end
    assert invoke(gate, pipeline_event(loans))["result"] == "approved"
    assert invoke(gate, pipeline_event(churn, "Failed", failureReason="step failed"))["result"] == "execution-failed"
    assert invoke(gate, pipeline_event(nobody, "Failed", failureReason="step failed"))["result"] == "execution-failed"
    # Then each decision names the line of its execution, and the execution of no line names none
    lines = {d.business_key: d.details.get("line") for d in decisions_of(stack, "pipeline-finished", since)}
    assert lines == {arn: "loans", f"execution:{churn}": "churn", f"execution:{nobody}": None}
    # And so does each notification
    sent = sorted((n["execution_arn"], n.get("line")) for n in inbox())
    assert sent == sorted([(loans, "loans"), (churn, "churn"), (nobody, None)])


def test_the_retraining_names_the_line_of_the_alarm_in_every_decision(stack: Stack) -> None:
    # Given the loans line's drift alarms and prepared data
    retraining_world(stack)
    handler = load_handler("start_retraining")
    now = datetime.now(UTC)
    # When one alarm starts a retraining and another is suppressed by the cooldown
    assert invoke(handler, alarm_event(at=now))["result"] == "started"
    suppressed = invoke(handler, alarm_event("closedloop-loans-drift-bias", at=now + timedelta(seconds=1)))
    assert suppressed["result"] == "suppressed"
    # Then both decisions name the loans line
    decisions = decisions_of(stack, "alarm", now - timedelta(minutes=1))
    assert [(d.result, d.details["line"]) for d in decisions] == [("started", "loans"), ("suppressed", "loans")]
