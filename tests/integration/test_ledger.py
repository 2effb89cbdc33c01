"""The ledger on moto: decisions, locks with leases, named state, consumed objects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest

from closedloop.errors import LockHeldError
from closedloop.ledger import Decision, Ledger
from support.stack import Stack, notification_inbox


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(stack: Stack, clock: Clock) -> Ledger:
    return Ledger(stack.settings.ledger_table, boto3.client("dynamodb"), clock=clock)


def decision(**overrides: object) -> Decision:
    base: dict[str, object] = {
        "route": "data-arrival",
        "event_id": "e1",
        "business_key": "run:loans/abc",
        "action": "start_data_prep",
        "result": "started",
        "details": {"objects": 3},
    }
    return Decision.model_validate({**base, **overrides})


def test_recording_the_same_outcome_of_the_same_event_twice_writes_one_item(ledger: Ledger) -> None:
    ledger.record(decision())
    ledger.record(decision())
    ledger.record(decision(event_id="e2"))
    assert [d.event_id for d in ledger.decisions_for("run:loans/abc")] == ["e1", "e2"]


def test_decisions_since_reads_across_days(ledger: Ledger, clock: Clock) -> None:
    ledger.record(decision(event_id="old", at=clock.now - timedelta(days=3)))
    ledger.record(decision(event_id="yesterday", at=clock.now - timedelta(days=1)))
    ledger.record(decision(event_id="today"))
    found = ledger.decisions_since(clock.now - timedelta(days=2))
    assert [d.event_id for d in found] == ["yesterday", "today"]
    assert found[-1].details == {"objects": 3}


def test_a_lock_is_single_flight_until_released(ledger: Ledger) -> None:
    ledger.acquire_lock("retrain#loans", "exec-1", timedelta(hours=2), reason="drift")
    with pytest.raises(LockHeldError) as held:
        ledger.acquire_lock("retrain#loans", "exec-2", timedelta(hours=2))
    assert held.value.context["holder"] == "exec-1"
    # the holder may take it again (a retried invocation)
    ledger.acquire_lock("retrain#loans", "exec-1", timedelta(hours=2))
    assert ledger.release_lock("retrain#loans", "exec-2") is False
    assert ledger.release_lock("retrain#loans", "exec-1") is True
    ledger.acquire_lock("retrain#loans", "exec-2", timedelta(hours=2))


def test_a_dead_holders_lock_is_reclaimed_after_its_lease(ledger: Ledger, clock: Clock) -> None:
    # Given a holder that took the lock, bound it to its execution, and died
    dead = ledger.acquire_lock("retrain#loans", "dead", timedelta(minutes=30), reason="drift alarm")
    ledger.bind_lock("retrain#loans", "dead", "arn:exec/dead")
    # When another holder tries within the lease, it is refused and the lock is unchanged
    clock.now += timedelta(minutes=29)
    with pytest.raises(LockHeldError):
        ledger.acquire_lock("retrain#loans", "new", timedelta(minutes=30), reason="retry")
    assert ledger.get_lock("retrain#loans") == dead.model_copy(update={"execution_arn": "arn:exec/dead"})
    # When it tries after the lease ran out
    clock.now += timedelta(minutes=2)
    lock = ledger.acquire_lock("retrain#loans", "new", timedelta(minutes=30), reason="retry")
    # Then the lock is the new holder's: its own times and reason, and no trace of the dead
    # holder's execution (whose end must not release the new holder's lock)
    reclaimed = dead.model_copy(
        update={
            "holder": "new",
            "acquired_at": clock.now,
            "expires_at": clock.now + timedelta(minutes=30),
            "reason": "retry",
            "execution_arn": "",
        }
    )
    assert lock == reclaimed
    assert ledger.get_lock("retrain#loans") == reclaimed
    assert ledger.release_lock("retrain#loans", "dead") is False
    assert ledger.get_lock("retrain#loans") == reclaimed


def test_named_state_round_trips(ledger: Ledger) -> None:
    assert ledger.get_state("cooldown#loans") is None
    ledger.put_state("cooldown#loans", {"until": "2026-11-27T15:00:00+00:00", "reason": "retrained"})
    assert ledger.get_state("cooldown#loans") == {"until": "2026-11-27T15:00:00+00:00", "reason": "retrained"}


def test_consumed_objects_are_found_in_chunks(ledger: Ledger) -> None:
    identities = [f"data/raw/loans/{i}.csv#v" for i in range(260)]
    ledger.mark_consumed(identities[:130], "run-1")
    found = ledger.consumed_objects(identities)
    assert len(found) == 130 and set(found.values()) == {"run-1"}


def test_the_retrain_lock_is_released_only_by_its_execution(ledger: Ledger) -> None:
    from closedloop.retrain_lock import RetrainLock

    lock = RetrainLock(ledger, lease=timedelta(hours=4))
    lock.acquire("models", "alarm:drift@t1", reason="drift alarm")
    lock.bind_execution("models", "alarm:drift@t1", "arn:exec/1")
    with pytest.raises(LockHeldError):
        lock.bind_execution("models", "someone-else", "arn:exec/2")
    assert lock.release_for_execution("models", "arn:exec/2") is False
    assert lock.current("models") is not None
    assert lock.release_for_execution("models", "arn:exec/1") is True
    assert lock.current("models") is None


def test_notifications_reach_the_topic_with_attributes(stack: Stack) -> None:
    from closedloop.notify import Notifier

    inbox = notification_inbox(stack.settings, "inbox")
    Notifier(stack.settings.notification_topic_arn, boto3.client("sns")).send(
        route="approval", subject="x" * 200, severity="WARNING", model_version=3
    )
    [message] = inbox()
    assert message == {"route": "approval", "severity": "WARNING", "subject": "x" * 200, "model_version": 3}


# -- intents: a decision written before its side effect is never lost, and never recorded twice ------

INTENT_T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)  # the clock fixture's start


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
    clock.now = INTENT_T0 + timedelta(minutes=5)
    # When the retry records what it sees ("duplicate": the objects were already taken)
    ledger.record(started(event_id="e2", result="duplicate", reason="already taken"))
    # Then the original decision comes first, with its own time, reason and details, marked recovered
    first, second = ledger.decisions_for("run:loans/abc")
    assert (first.result, first.event_id, first.at) == ("started", "e1", INTENT_T0)
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
    assert ledger.decisions_since(INTENT_T0 - timedelta(days=1)) == []
