"""`closedloop.route_output`: what a route writes is under its name, and under its line when it has one."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer, DataRecord

from closedloop import routes
from closedloop.ledger import Decision
from closedloop.line import LineCatalog, unbound
from closedloop.model import Model
from closedloop.route_output import RouteOutput
from closedloop.settings import Settings
from support.handlers import FakeLambdaContext
from support.stack import stack_env


class Recorded(Model):
    value: int


class FakeLedger:
    def __init__(self) -> None:
        self.decisions: list[Decision] = []

    def record(self, decision: Decision) -> Decision:
        self.decisions.append(decision)
        return decision


class FakeNotifier:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, *, route: str, subject: str, severity: str = "INFO", **facts: Any) -> str:
        self.sent.append({"route": route, "subject": subject, "severity": severity, **facts})
        return f"m-{len(self.sent)}"


def stack_settings() -> Settings:
    return Settings.from_environ(stack_env())


def output_for(line: str | None) -> tuple[RouteOutput, FakeLedger, FakeNotifier]:
    settings = stack_settings()
    bound = unbound(settings) if line is None else LineCatalog(settings).settings_for(line)
    ledger, notifier = FakeLedger(), FakeNotifier()
    output = RouteOutput(routes.PIPELINE_FINISHED, ledger, notifier, settings=bound)  # type: ignore[arg-type]
    return output, ledger, notifier


def test_a_line_bound_routes_decisions_and_notifications_carry_the_line() -> None:
    # Given route 3's output for the churn line
    output, ledger, notifier = output_for("churn")
    # When it records a decision, builds one, and notifies
    recorded = output.record(
        event_id="e-1", business_key="k", action="approval_gate", result="approved", details={"version": 3}
    )
    built = output.decision(event_id="e-2", business_key="k", action="approval_gate", result="pending")
    output.notify("model version 3 approved", severity="WARNING", version=3)
    # Then each says the route's name and the line, after the details it was given
    assert recorded is ledger.decisions[0]
    assert (recorded.route, recorded.details) == ("pipeline-finished", {"version": 3, "line": "churn"})
    assert list(recorded.details) == ["version", "line"]
    assert built.details == {"line": "churn"} and len(ledger.decisions) == 1  # built, not recorded
    assert notifier.sent == [
        {
            "route": "pipeline-finished",
            "subject": "model version 3 approved",
            "severity": "WARNING",
            "version": 3,
            "line": "churn",
        }
    ]


def test_the_output_of_no_line_adds_nothing_and_keeps_none_unless_told() -> None:
    # Given route 3's output for no line (an event no deployed line owns)
    output, ledger, notifier = output_for(None)
    # When it records details holding None, once as they are and once leaving None out
    output.record(event_id="e", business_key="k", action="a", result="r", details={"a": None, "b": 1})
    output.record(event_id="e", business_key="k", action="a", result="s", details={"a": None, "b": 1}, omit_none=True)
    output.notify("subject")
    # Then the details are the given ones (no `line`), the second without the None
    assert [d.details for d in ledger.decisions] == [{"a": None, "b": 1}, {"b": 1}]
    assert notifier.sent == [{"route": "pipeline-finished", "subject": "subject", "severity": "INFO"}]


def test_the_line_of_the_settings_wins_over_a_detail_named_line() -> None:
    output, ledger, _ = output_for("loans")
    output.record(event_id="e", business_key="k", action="a", result="r", details={"line": 7})
    assert ledger.decisions[0].details == {"line": "loans"}


class MemoryStore(BasePersistenceLayer):
    """An idempotency store in memory: what the guard saved, by key."""

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


def test_a_guard_runs_once_under_the_route_and_action_with_the_settings_ttl() -> None:
    # Given route 3's output with its settings, and a side effect guarded by it
    output, _, _ = output_for("loans")
    store, calls = MemoryStore(), []

    def decide(data: dict[str, Any]) -> Recorded:
        calls.append(data["id"])
        return Recorded(value=len(calls))

    guard = output.once(decide, action="approval_gate", key="id", data_argument="data", output=Recorded, store=store)
    output.register_lambda_context(FakeLambdaContext())  # type: ignore[arg-type]
    before = time.time()
    # When it is called twice with the same business key
    first, second = guard(data={"id": "x"}), guard(data={"id": "x"})
    # Then the side effect ran once, under `<route>.<action>#…`, kept for the settings' TTL
    assert (first, second, calls) == (Recorded(value=1), Recorded(value=1), ["x"])
    [(key, record)] = store.records.items()
    assert key.startswith("pipeline-finished.approval_gate#")
    ttl = stack_settings().idempotency_ttl_s
    assert before + ttl - 1 <= record.expiry_timestamp <= time.time() + ttl + 1


def test_an_output_without_notifier_or_settings_refuses_what_it_cannot_do() -> None:
    output = RouteOutput(routes.DRIFT_MONITOR, FakeLedger())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="notifies nobody"):
        output.notify("subject")
    with pytest.raises(TypeError, match="no settings"):
        output.once(
            lambda data: Recorded(value=1), action="a", key="id", data_argument="data", output=Recorded, store=object
        )  # type: ignore[arg-type]
