"""The in-memory ledger of route 6's unit tests keeps the real ledger's lease semantics.

`tests/unit/test_drift_retrain_guards.py` decides single-flight, lease take-over and cooldown cases
with `FakeLedger`. Here the same lock and state operations run on the real `Ledger` (DynamoDB on
moto) and on the fake, step by step; whatever the real one answers is what the fake must answer.
Then the guards' own lease cases run once more with the real `Ledger` in place of the fake.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest
from unit.test_drift_retrain_guards import T0, Clock, FakeLedger, World

from closedloop.errors import LockHeldError
from closedloop.ledger import Ledger, Lock
from support.stack import Stack

LOCK = "retrain#closedloop-loans"
Step = tuple[Any, ...]

# Each scenario is a list of steps, run in order on a fresh ledger:
#   ("at", seconds after T0)          the clock moves (fractions of a second included)
#   ("acquire", holder, lease seconds, reason)
#   ("release", holder) / ("bind", holder, execution ARN) / ("get",)
#   ("put_state", name, values) / ("get_state", name)
SCENARIOS: dict[str, list[Step]] = {
    "held by another holder during its lease": [
        ("acquire", "alarm:a@1", 14400, "drift"),
        ("at", 60),
        ("acquire", "alarm:b@2", 14400, "drift"),
        ("get",),
    ],
    "the holder re-takes its own lock (a retry) with a new lease": [
        ("acquire", "alarm:a@1", 14400, "drift"),
        ("bind", "alarm:a@1", "arn:exec/1"),
        ("at", 120),
        ("acquire", "alarm:a@1", 14400, "retry"),
        ("get",),
    ],
    "taken over after the lease ran out, not at its last second": [
        ("acquire", "alarm:dead@1", 14400, "drift"),
        ("bind", "alarm:dead@1", "arn:exec/dead"),
        ("at", 14400),
        ("acquire", "alarm:b@2", 14400, "drift"),
        ("at", 14401),
        ("acquire", "alarm:b@2", 14400, "drift"),
        ("get",),
        ("release", "alarm:dead@1"),
        ("bind", "alarm:dead@1", "arn:exec/late"),
        ("get",),
    ],
    "leases are whole seconds": [
        ("at", 0.25),
        ("acquire", "alarm:a@1", 10, "drift"),
        ("get",),
        ("at", 10.5),
        ("acquire", "alarm:b@2", 10, "drift"),
        ("at", 10.75),
        ("acquire", "alarm:b@2", 10, "drift"),
        ("at", 11.0),
        ("acquire", "alarm:b@2", 10, "drift"),
        ("get",),
    ],
    "only the holder releases or binds": [
        ("acquire", "alarm:a@1", 14400, "drift"),
        ("release", "alarm:b@2"),
        ("bind", "alarm:b@2", "arn:exec/2"),
        ("get",),
        ("bind", "alarm:a@1", "arn:exec/1"),
        ("get",),
        ("release", "alarm:a@1"),
        ("release", "alarm:a@1"),
        ("get",),
        ("bind", "alarm:a@1", "arn:exec/1"),
        ("acquire", "alarm:b@2", 14400, "drift"),
        ("get",),
    ],
    "an expired lock is still its holder's to release until someone takes it": [
        ("acquire", "alarm:a@1", 60, "drift"),
        ("at", 3600),
        ("get",),
        ("bind", "alarm:a@1", "arn:exec/1"),
        ("release", "alarm:a@1"),
        ("get",),
    ],
    "named state round-trips as JSON": [
        ("get_state", "cooldown#closedloop-loans"),
        ("put_state", "cooldown#closedloop-loans", {"until": "2026-11-27T16:00:00+00:00", "n": 2, "ok": True}),
        ("get_state", "cooldown#closedloop-loans"),
        ("put_state", "cooldown#closedloop-loans", {"until": None}),
        ("get_state", "cooldown#closedloop-loans"),
    ],
}


def _lock(lock: Lock | None) -> tuple[Any, ...] | None:
    if lock is None:
        return None
    return (lock.holder, lock.acquired_at, lock.expires_at, lock.reason, lock.execution_arn)


def _run(ledger: Any, clock: Clock, steps: list[Step]) -> list[Any]:
    """What each step answered: a lock, a refusal (with who holds it), a boolean, state."""
    answers: list[Any] = []
    for step in steps:
        kind, *args = step
        try:
            if kind == "at":
                clock.now = T0 + timedelta(seconds=args[0])
                continue
            if kind == "acquire":
                holder, lease, reason = args
                answers.append(("acquired", _lock(ledger.acquire_lock(LOCK, holder, timedelta(seconds=lease), reason))))
            elif kind == "release":
                answers.append(("released", ledger.release_lock(LOCK, args[0])))
            elif kind == "bind":
                ledger.bind_lock(LOCK, args[0], args[1])
                answers.append(("bound",))
            elif kind == "get":
                answers.append(("lock", _lock(ledger.get_lock(LOCK))))
            elif kind == "put_state":
                ledger.put_state(args[0], args[1])
            elif kind == "get_state":
                answers.append(("state", ledger.get_state(args[0])))
            else:
                raise AssertionError(f"unknown step {kind}")
        except LockHeldError as refused:
            answers.append(("held", kind, refused.context.get("holder")))
    return answers


@pytest.fixture
def real(stack: Stack) -> Iterator[tuple[Ledger, Clock]]:
    clock = Clock()
    yield Ledger(stack.settings.ledger_table, boto3.client("dynamodb"), clock=clock), clock


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_fake_ledger_answers_what_the_real_ledger_answers(real: tuple[Ledger, Clock], scenario: str) -> None:
    # Given the same steps on the real ledger (DynamoDB on moto) and on the unit tests' fake
    ledger, clock = real
    steps = SCENARIOS[scenario]
    # When each runs them
    expected = _run(ledger, clock, steps)
    fake_clock = Clock()
    answered = _run(FakeLedger(fake_clock), fake_clock, steps)
    # Then the fake answers exactly what the real ledger answered, step by step
    assert answered == expected


def test_the_scenarios_exercise_every_answer() -> None:
    # The contract is only as good as its cases: refusals, take-overs, releases both ways, state
    kinds = set()
    for steps in SCENARIOS.values():
        clock = Clock()
        for answer in _run(FakeLedger(clock), clock, steps):
            kinds.add(answer[:2] if answer[0] in {"held", "released"} else answer[:1])
    assert kinds == {
        ("acquired",),
        ("held", "acquire"),
        ("held", "bind"),
        ("bound",),
        ("released", True),
        ("released", False),
        ("lock",),
        ("state",),
    }


# -- the guards' lease cases, once more on the real ledger ------------------------------------------


@pytest.fixture
def world(stack: Stack) -> World:
    # no cooldown in the way: only the lock and its lease decide
    return World(
        ledger_for=lambda clock: Ledger(stack.settings.ledger_table, boto3.client("dynamodb"), clock=clock),
        RETRAIN_COOLDOWN_SECONDS="0",
    )


def test_on_the_real_ledger_a_running_retraining_suppresses_and_a_dead_holders_lock_is_taken(world: World) -> None:
    # Given a retraining started by one alarm, still running
    assert world.alarm().result == "started"
    # When another alarm comes a minute later, it is suppressed by the lock
    world.clock.now = T0 + timedelta(minutes=1)
    assert world.alarm("closedloop-loans-drift-predictions").suppressed_because == "retraining-running"
    # When the running execution finished but its holder died before releasing, the lease decides
    world.sagemaker.finish_all()
    world.clock.now = T0 + timedelta(seconds=14400)
    assert world.alarm().suppressed_because == "retraining-running"
    world.clock.now = T0 + timedelta(seconds=14401)
    # Then after the lease the next alarm takes the lock over and starts again
    outcome = world.alarm()
    assert outcome.result == "started"
    lock = world.ledger.get_lock(LOCK)
    assert lock is not None and lock.execution_arn == outcome.execution_arn
    assert len(world.sagemaker.executions) == 2
