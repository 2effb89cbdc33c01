"""Out-of-order events the route suites do not already cover: the outcome does not depend on delivery order.

Each route decides from what is true now (the ledger, the registry, the endpoint), not from the
order events arrive in; `docs/reliability.md` lists the route suites' out-of-order tests too.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from support.events import object_created, sqs_batch
from support.handlers import invoke, load_handler
from support.rollout import Rollout, provision_rollout
from support.stack import Stack
from support.worlds import (
    alarm_event,
    drift_datapoints,
    drift_world,
    ledger,
    pipeline_executions,
    processing_jobs,
    retraining_world,
    schedule_event,
)


def test_uploads_redelivered_in_another_order_are_the_same_run(stack: Stack) -> None:
    handler = load_handler("start_data_prep")
    events = [object_created(stack.data_bucket, f"raw/loans/order/{n}.csv", version_id="v-1") for n in "abc"]
    invoke(handler, sqs_batch(events), remaining_ms=600_000)
    # When SQS redelivers the same uploads in reverse order (as new messages)
    assert invoke(handler, sqs_batch(events[::-1]), remaining_ms=600_000) == {"batchItemFailures": []}
    # Then it is the same run: one job
    assert len(processing_jobs(stack)) == 1


def test_a_late_progress_event_after_the_outcome_changes_nothing(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    world: Rollout = provision_rollout(stack, monkeypatch)
    world.live()
    world.hold_next_update()
    v2 = world.approved()
    world.deliver(world.event(v2))
    progress = world.endpoint_event("SageMaker Endpoint Deployment State Change")  # UPDATING, while it runs
    from closedloop_ops.moto_ext.hosting import finish_update
    from support.rollout import ENDPOINT
    from support.stack import ACCOUNT, REGION

    finish_update(ACCOUNT, REGION, ENDPOINT)
    # When the completion arrives before the progress event it followed
    assert world.outcome()["result"] == "live"
    assert world.outcome(progress)["result"] == "unchanged"
    # Then v2 stays live: the endpoint, not the event's status, says what is true
    state = world.state()
    assert (state["live_version"], state["status"], state["pending_model_package_arn"]) == (2, "live", "")
    assert [d.result for d in world.decisions(2) if d.action == "record_outcome"] == ["live"]


def test_alarm_entries_delivered_newest_first_start_one_retraining(stack: Stack) -> None:
    retraining_world(stack)
    handler = load_handler("start_retraining")
    start = datetime.now(UTC) - timedelta(minutes=50)  # all three within MaxAlarmAgeSeconds, none ahead
    first = alarm_event(at=start)
    recovered = alarm_event(at=start + timedelta(minutes=20), state="OK", previous="ALARM")
    again = alarm_event(at=start + timedelta(minutes=40))
    # When the three state changes arrive newest first
    outcomes = [invoke(handler, e, remaining_ms=600_000) for e in (again, recovered, first)]
    # Then one retraining (started by whichever entry came first); the rest are recorded suppressions
    assert [o["result"] for o in outcomes] == ["started", "suppressed", "suppressed"]
    assert [o["suppressed_because"] for o in outcomes[1:]] == ["not-entering-alarm", "cooldown"]
    assert len(pipeline_executions(stack)) == 1
    cooldown = ledger(stack).get_state("cooldown#closedloop-loans")
    assert cooldown is not None and cooldown["execution_arn"] == outcomes[0]["execution_arn"]


def test_a_late_run_of_an_earlier_schedule_adds_nothing(stack: Stack) -> None:
    drift_world(stack)
    handler = load_handler("drift_monitor")
    later = {**schedule_event("run-11h"), "scheduled_time": "2026-11-27T11:00:00Z"}
    earlier = {**schedule_event("run-10h"), "scheduled_time": "2026-11-27T10:00:00Z"}
    # When the 11:00 run measures first and the 10:00 run is delivered late
    results = [invoke(handler, e, remaining_ms=600_000)["result"] for e in (later, earlier)]
    # Then the traffic is counted once: the late run starts past the watermark
    assert results == ["published", "insufficient-records"]
    assert drift_datapoints(stack) == 1
