"""Route 6's guards — transition, cooldown, prepared data, single-flight lock, running executions —
with an in-memory ledger, SageMaker and idempotency store (no AWS, no moto).

`FakeLedger` is held to the real `Ledger`'s lock and state semantics by
`tests/integration/test_ledger_lock_contract.py`, which runs the same operations on both (and the
lease cases below on the real one).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer, DataRecord
from botocore.exceptions import ClientError

from closedloop import ledger_keys
from closedloop.errors import ClosedloopError, LockHeldError, UnknownAlarmError
from closedloop.events.cloudwatch import parse_alarm_event
from closedloop.ledger import Decision, Lock
from closedloop.retrain.service import AlarmRetraining
from closedloop.settings import Settings
from support.events import load_event
from support.handlers import FakeLambdaContext
from support.stack import stack_env

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
PIPELINE_ARN = "arn:aws:sagemaker:eu-west-1:123456789012:pipeline/closedloop-training"
PREPARED = {
    "prepared_manifest_uri": "s3://closedloop-test-data/prepared/loans/run-1/manifest.json",
    "data_uri": "s3://closedloop-test-data/prepared/loans/run-1/data.csv",
    "prep_run_id": "run-1",
    "dataset": "loans",
    "code_version": "sha256:abc",
}


@pytest.fixture(autouse=True)
def _fresh_metrics() -> Iterator[None]:
    """Metrics of domain calls made without a handler must not leak into another test's flush."""
    from closedloop.observability import metrics

    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class FakeLedger:
    """The ledger's semantics in memory: a lock is held until its lease runs out (or released).

    As in DynamoDB, a lease ends at a whole second (the item stores epoch seconds) and state is
    stored as JSON.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.decisions: list[Decision] = []
        self.state: dict[str, dict[str, Any]] = {}
        self.locks: dict[str, Lock] = {}

    def record(self, decision: Decision) -> Decision:
        self.decisions.append(decision)
        return decision

    def get_state(self, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.state.get(name))

    def put_state(self, name: str, values: dict[str, Any]) -> None:
        self.state[name] = json.loads(json.dumps(dict(values), default=str))

    def acquire_lock(self, name: str, holder: str, lease: timedelta, reason: str = "") -> Lock:
        now = self.clock()
        current = self.locks.get(name)
        if current is not None and current.holder != holder and _epoch(current.expires_at) >= _epoch(now):
            raise LockHeldError("held", lock=name, holder=current.holder, expires_at=current.expires_at.isoformat())
        lock = Lock(name=name, holder=holder, acquired_at=now, expires_at=now + lease, reason=reason)
        self.locks[name] = lock.model_copy(update={"expires_at": datetime.fromtimestamp(_epoch(lock.expires_at), UTC)})
        return lock

    def release_lock(self, name: str, holder: str) -> bool:
        if name in self.locks and self.locks[name].holder == holder:
            del self.locks[name]
            return True
        return False

    def bind_lock(self, name: str, holder: str, execution_arn: str) -> None:
        lock = self.locks.get(name)
        if lock is None or lock.holder != holder:
            raise LockHeldError("not held", lock=name)
        self.locks[name] = lock.model_copy(update={"execution_arn": execution_arn})

    def get_lock(self, name: str) -> Lock | None:
        return self.locks.get(name)


def _epoch(at: datetime) -> int:
    return int(at.timestamp())


class FakeSageMaker:
    def __init__(self) -> None:
        self.executions: list[dict[str, Any]] = []  # newest last
        self.fail_start: ClientError | None = None
        self.starts = 0

    def get_paginator(self, name: str) -> FakeSageMaker:
        assert name == "list_pipeline_executions"
        return self

    def paginate(self, **kwargs: Any) -> list[dict[str, Any]]:
        assert kwargs["SortOrder"] == "Descending"
        return [{"PipelineExecutionSummaries": [dict(e) for e in reversed(self.executions)]}]

    def start_pipeline_execution(self, **request: Any) -> dict[str, str]:
        self.starts += 1
        if self.fail_start is not None:
            raise self.fail_start
        for execution in self.executions:
            if execution["token"] == request["ClientRequestToken"]:
                return {"PipelineExecutionArn": execution["PipelineExecutionArn"]}
        arn = f"arn:aws:sagemaker:eu-west-1:123456789012:pipeline/closedloop-training/execution/e{len(self.executions)}"
        self.executions.append(
            {
                "PipelineExecutionArn": arn,
                "PipelineExecutionStatus": "Executing",
                "PipelineExecutionDisplayName": request["PipelineExecutionDisplayName"],
                "token": request["ClientRequestToken"],
                "request": request,
            }
        )
        return {"PipelineExecutionArn": arn}

    def list_pipeline_parameters_for_execution(self, PipelineExecutionArn: str, MaxResults: int) -> dict[str, Any]:
        [execution] = [e for e in self.executions if e["PipelineExecutionArn"] == PipelineExecutionArn]
        return {"PipelineParameters": execution.get("request", {}).get("PipelineParameters", [])}

    def finish_all(self, status: str = "Succeeded") -> None:
        for execution in self.executions:
            execution["PipelineExecutionStatus"] = status


class FakeCloudWatch:
    def __init__(self) -> None:
        self.tags: dict[str, list[dict[str, str]]] = {}

    def list_tags_for_resource(self, ResourceARN: str) -> dict[str, Any]:
        if ResourceARN not in self.tags:
            raise ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "no alarm"}}, "ListTags")
        return {"Tags": self.tags[ResourceARN]}


class MemoryStore(BasePersistenceLayer):
    def __init__(self) -> None:
        super().__init__()
        self.records: dict[str, DataRecord] = {}

    def _get_record(self, idempotency_key: str) -> DataRecord:
        if idempotency_key not in self.records:
            raise IdempotencyItemNotFoundError
        return self.records[idempotency_key]

    def _put_record(self, data_record: DataRecord) -> None:
        if data_record.idempotency_key in self.records:
            raise IdempotencyItemAlreadyExistsError(old_data_record=self.records[data_record.idempotency_key])
        self.records[data_record.idempotency_key] = data_record

    def _update_record(self, data_record: DataRecord) -> None:
        self.records[data_record.idempotency_key] = data_record

    def _delete_record(self, data_record: DataRecord) -> None:
        self.records.pop(data_record.idempotency_key, None)


class World:
    """Route 6's service with fakes around it; `ledger_for` swaps in another ledger (the real one)."""

    def __init__(self, ledger_for: Callable[[Clock], Any] = FakeLedger, **env: str) -> None:
        self.settings = Settings.from_environ({**stack_env(), **env})
        self.clock = Clock()
        self.ledger = ledger_for(self.clock)
        self.sagemaker = FakeSageMaker()
        self.cloudwatch = FakeCloudWatch()
        self.service = AlarmRetraining(
            settings=self.settings,
            ledger=self.ledger,  # type: ignore[arg-type]
            sagemaker=self.sagemaker,  # type: ignore[arg-type]
            cloudwatch=self.cloudwatch,  # type: ignore[arg-type]
            idempotency_store=MemoryStore(),
            clock=self.clock,
        )
        self.service.register_lambda_context(FakeLambdaContext())  # type: ignore[arg-type]
        self.ledger.put_state(ledger_keys.latest_prepared(self.settings.model_package_group), PREPARED)
        self.seq = 0

    def alarm(
        self, name: str = "closedloop-loans-drift-features", *, previous: str = "OK", state: str = "ALARM"
    ) -> Any:
        self.seq += 1
        event = load_event("alarm_state_change")
        event["id"] = f"evt-{self.seq}"
        event["resources"] = [f"arn:aws:cloudwatch:eu-west-1:123456789012:alarm:{name}"]
        detail = event["detail"]
        detail["alarmName"] = name
        detail["state"]["value"] = state
        detail["previousState"]["value"] = previous
        detail["state"]["timestamp"] = (self.clock() + timedelta(milliseconds=self.seq)).strftime(
            "%Y-%m-%dT%H:%M:%S.%f"
        )[:-3] + "+0000"
        return self.service.handle(parse_alarm_event(event))

    def suppressions(self) -> list[str]:
        return [d.details["suppressed_because"] for d in self.ledger.decisions if d.result == "suppressed"]


@pytest.fixture
def world() -> World:
    return World()


def test_an_alarm_entering_alarm_starts_one_retraining_and_a_cooldown(world: World) -> None:
    outcome = world.alarm()
    assert outcome.result == "started"
    [execution] = world.sagemaker.executions
    assert outcome.execution_arn == execution["PipelineExecutionArn"]
    parameters = {p["Name"]: p["Value"] for p in execution["request"]["PipelineParameters"]}
    assert parameters["TriggerKind"] == "alarm"
    assert parameters["TriggerReason"].startswith(
        "closedloop-loans-drift-features; closedloop/Drift MaxFeaturePSI = 0.4127"
    )
    assert parameters["InputDataUri"] == PREPARED["data_uri"]
    lock = world.ledger.get_lock("retrain#closedloop-loans")
    assert lock is not None and lock.execution_arn == outcome.execution_arn
    cooldown = world.ledger.get_state(ledger_keys.cooldown("closedloop-loans"))
    assert cooldown is not None and cooldown["until"] == (T0 + timedelta(hours=6)).isoformat()
    assert [d.result for d in world.ledger.decisions] == ["started"]


def test_the_lock_suppresses_while_a_retraining_runs() -> None:
    # Given no cooldown at all, and a retraining that was started a minute ago and still holds the lock
    world = World(RETRAIN_COOLDOWN_SECONDS="0")
    world.alarm()
    world.clock.now = T0 + timedelta(minutes=1)
    outcome = world.alarm("closedloop-loans-drift-predictions")
    assert (outcome.result, outcome.suppressed_because) == ("suppressed", "retraining-running")
    assert len(world.sagemaker.executions) == 1


def test_the_cooldown_suppresses_after_the_retraining_finished(world: World) -> None:
    first = world.alarm()
    # Given the pipeline finished and route 3 released the lock
    world.sagemaker.finish_all()
    assert first.execution_arn is not None
    world.ledger.release_lock("retrain#closedloop-loans", world.ledger.locks["retrain#closedloop-loans"].holder)
    # When the alarm flaps back within the cooldown
    world.clock.now = T0 + timedelta(hours=5, minutes=59)
    assert world.alarm(previous="OK").suppressed_because == "cooldown"
    # And after the cooldown it starts again
    world.clock.now = T0 + timedelta(hours=6, seconds=1)
    assert world.alarm().result == "started"
    assert len(world.sagemaker.executions) == 2


def test_a_lock_whose_holder_died_is_taken_after_its_lease(world: World) -> None:
    # Given a holder took the lock and died before starting anything
    world.ledger.acquire_lock("retrain#closedloop-loans", "alarm:dead@x", timedelta(seconds=14400))
    assert world.alarm().suppressed_because == "retraining-running"
    # When the lease (the pipeline's maximum run time) has run out
    world.clock.now = T0 + timedelta(seconds=14401)
    # Then the next alarm takes it over and starts the retraining
    assert world.alarm().result == "started"


def _running(name: str, group: str) -> dict[str, Any]:
    return {
        "PipelineExecutionArn": f"{PIPELINE_ARN}/execution/{name}",
        "PipelineExecutionStatus": "Executing",
        "PipelineExecutionDisplayName": f"upload-{name}",
        "token": name,
        "request": {"PipelineParameters": [{"Name": "ModelPackageGroupName", "Value": group}]},
    }


def test_a_running_execution_of_another_line_does_not_hold_this_line_back(world: World) -> None:
    # Given the shared pipeline running for another line's group
    world.sagemaker.executions.append(_running("other", "closedloop-churn"))
    # When this line's drift alarm fires
    outcome = world.alarm()
    # Then this line retrains all the same
    assert outcome.result == "started" and world.sagemaker.starts == 1


def test_a_running_execution_started_elsewhere_suppresses_and_frees_the_lock(world: World) -> None:
    world.sagemaker.executions.append(_running("up", "closedloop-loans"))
    outcome = world.alarm()
    assert outcome.suppressed_because == "pipeline-running"
    assert world.ledger.get_lock("retrain#closedloop-loans") is None
    assert world.sagemaker.starts == 0


def test_a_failed_start_frees_the_lock_and_a_retry_starts(world: World) -> None:
    world.sagemaker.fail_start = ClientError(
        {"Error": {"Code": "ThrottlingException", "Message": "slow down"}, "ResponseMetadata": {"HTTPStatusCode": 400}},
        "StartPipelineExecution",
    )
    event = load_event("alarm_state_change")
    with pytest.raises(ClosedloopError) as caught:
        world.service.handle(parse_alarm_event(event))
    assert caught.value.retryable
    assert world.ledger.get_lock("retrain#closedloop-loans") is None
    assert [d.result for d in world.ledger.decisions] == ["failed"]
    # When the same event comes back (Lambda's retry) and the start works
    world.sagemaker.fail_start = None
    assert world.service.handle(parse_alarm_event(event)).result == "started"


def test_the_same_alarm_event_twice_decides_once(world: World) -> None:
    event = parse_alarm_event(load_event("alarm_state_change"))
    first = world.service.handle(event)
    again = world.service.handle(event)
    assert first == again
    assert world.sagemaker.starts == 1
    assert len(world.ledger.decisions) == 1


def test_a_retry_after_a_crash_between_start_and_bind_binds_its_own_execution(world: World) -> None:
    event = parse_alarm_event(load_event("alarm_state_change"))
    original_bind = world.ledger.bind_lock

    def crash(*args: Any) -> None:
        raise RuntimeError("the function died")

    world.ledger.bind_lock = crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        world.service.handle(event)
    world.ledger.bind_lock = original_bind  # type: ignore[method-assign]
    # When the event is retried, its own execution is found running
    outcome = world.service.handle(event)
    assert (outcome.result, outcome.found_existing) == ("started", True)
    assert len(world.sagemaker.executions) == 1
    lock = world.ledger.get_lock("retrain#closedloop-loans")
    assert lock is not None and lock.execution_arn == outcome.execution_arn


@pytest.mark.parametrize(("previous", "state"), [("ALARM", "ALARM"), ("ALARM", "OK"), ("OK", "INSUFFICIENT_DATA")])
def test_only_transitions_into_alarm_start_anything(world: World, previous: str, state: str) -> None:
    assert world.alarm(previous=previous, state=state).suppressed_because == "not-entering-alarm"
    assert world.sagemaker.starts == 0


def test_no_prepared_data_is_a_recorded_suppression(world: World) -> None:
    world.ledger.state.clear()
    outcome = world.alarm()
    assert outcome.suppressed_because == "no-prepared-data"
    assert world.suppressions() == ["no-prepared-data"]
    assert world.ledger.get_lock("retrain#closedloop-loans") is None


def test_endpoint_health_alarms_do_not_retrain(world: World) -> None:
    assert world.alarm("closedloop-loans-endpoint-5xx").suppressed_because == "operational-alarm"
    assert world.alarm("closedloop-loans-endpoint-latency").suppressed_because == "operational-alarm"
    assert world.sagemaker.starts == 0


def test_unknown_alarms_are_errors_recorded_before_they_go_to_the_dlq(world: World) -> None:
    with pytest.raises(UnknownAlarmError) as caught:
        world.alarm("someone-elses-alarm")
    assert not caught.value.retryable
    assert [d.result for d in world.ledger.decisions] == ["rejected"]
    # a tag naming another model group is refused too
    arn = "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:closedloop-loans-drift-bias"
    world.cloudwatch.tags[arn] = [{"Key": "closedloop:model-group", "Value": "other-models"}]
    with pytest.raises(UnknownAlarmError, match="other-models"):
        world.alarm("closedloop-loans-drift-bias")


def test_listed_alarms_of_other_names_retrain_and_the_tag_may_confirm_them() -> None:
    world = World(EXTRA_ALARM_NAMES="mm-closedloop-loans-feature-drift,Model Monitor violations")
    arn = "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:Model Monitor violations"
    world.cloudwatch.tags[arn] = [{"Key": "closedloop:model-group", "Value": "closedloop-loans"}]
    assert world.alarm("Model Monitor violations").result == "started"
    assert world.ledger.decisions[-1].details["matched_by"] == "name"
