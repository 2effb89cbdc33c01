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
    ledger.acquire_lock("retrain#loans", "dead", timedelta(minutes=30))
    clock.now += timedelta(minutes=29)
    with pytest.raises(LockHeldError):
        ledger.acquire_lock("retrain#loans", "new", timedelta(minutes=30))
    clock.now += timedelta(minutes=2)
    lock = ledger.acquire_lock("retrain#loans", "new", timedelta(minutes=30))
    assert lock.holder == "new"
    assert ledger.get_lock("retrain#loans") == lock.model_copy(update={"acquired_at": lock.acquired_at})


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
