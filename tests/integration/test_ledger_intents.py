"""Intents: a decision written before its side effect is never lost, and never recorded twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest

from closedloop.ledger import Decision, Ledger
from support.stack import Stack

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(stack: Stack, clock: Clock) -> Ledger:
    return Ledger(stack.settings.ledger_table, boto3.client("dynamodb"), clock=clock)


def started(**overrides: object) -> Decision:
    base: dict[str, object] = {
        "route": "data-arrival",
        "event_id": "e1",
        "business_key": "run:loans/abc",
        "action": "start_data_prep",
        "result": "started",
        "reason": "the batch held 3 new objects",
        "details": {"job": "closedloop-prep-loans-abc"},
    }
    return Decision(**{**base, **overrides})  # type: ignore[arg-type]


def test_the_intended_decision_itself_completes_the_intent(ledger: Ledger) -> None:
    # Given an intent written before the job started
    ledger.intend(started())
    # When the function lives to record the same decision
    ledger.record(started())
    # Then there is one decision, and no open intent
    assert [d.result for d in ledger.decisions_for("run:loans/abc")] == ["started"]
    assert ledger.open_intents() == []


def test_a_retry_that_finds_the_side_effect_done_records_the_original_decision_first(
    ledger: Ledger, clock: Clock
) -> None:
    # Given an intent, then a crash: the decision was never written
    ledger.intend(started())
    assert ledger.open_intents()[0].result == "started"
    clock.now = T0 + timedelta(minutes=5)
    # When the retry records what it sees ("duplicate": the objects were already taken)
    ledger.record(started(event_id="e2", result="duplicate", reason="already taken"))
    # Then the original decision comes first, with its own time, reason and details, marked recovered
    first, second = ledger.decisions_for("run:loans/abc")
    assert (first.result, first.event_id, first.at) == ("started", "e1", T0)
    assert first.reason.startswith("the batch held 3 new objects; recorded on retry")
    assert first.details == {"job": "closedloop-prep-loans-abc", "recovered": True}
    assert (second.result, second.event_id) == ("duplicate", "e2")
    assert ledger.open_intents() == []


def test_settle_intent_records_it_once(ledger: Ledger) -> None:
    ledger.intend(started())
    assert ledger.settle_intent("run:loans/abc", "data-arrival", "start_data_prep") is True
    assert ledger.settle_intent("run:loans/abc", "data-arrival", "start_data_prep") is False
    assert [d.result for d in ledger.decisions_for("run:loans/abc")] == ["started"]


def test_a_withdrawn_intent_is_never_recorded(ledger: Ledger) -> None:
    # Given an intent whose side effect failed
    ledger.intend(started())
    ledger.withdraw_intent("run:loans/abc", "data-arrival", "start_data_prep")
    # When the failure is recorded
    ledger.record(started(result="failed", reason="AccessDenied"))
    # Then only the failure is in the ledger
    assert [d.result for d in ledger.decisions_for("run:loans/abc")] == ["failed"]


def test_intents_of_other_keys_routes_and_actions_are_left_alone(ledger: Ledger) -> None:
    ledger.intend(started())
    ledger.record(started(business_key="run:loans/other", result="duplicate"))
    ledger.record(started(action="another_action", result="skipped"))
    ledger.record(started(route="data-prepared", result="started"))
    assert [(d.business_key, d.action) for d in ledger.open_intents()] == [("run:loans/abc", "start_data_prep")]


def test_intents_stay_out_of_the_audit_index(ledger: Ledger) -> None:
    ledger.intend(started())
    assert ledger.decisions_since(T0 - timedelta(days=1)) == []
