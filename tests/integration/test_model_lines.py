"""Model lines on moto: every route with events of two lines (loans and churn), one after the other and at once.

Each route resolves the line from its event (route 1: the key prefix; 2: the prepared run's
dataset; 3: the execution's ModelPackageGroupName parameter; 4: the event's model group; 5: the
endpoint; 6: the alarm; 7: the schedule's input). These tests drive the real handlers and check
that what one line's event did stays within that line's names: its champion, endpoint, retraining
lock, cooldown, baseline, latest prepared data and ledger entries — and that the other line's are
exactly as they were.

Events "at once" run in threads released together (`support.faults.race`) through each function's
own `lambda_handler` code without the process-wide Powertools decorators (`support.lines.unwrapped`):
Lambda runs concurrent invocations in separate environments.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from closedloop import ledger_keys
from closedloop.errors import UnknownDatasetError
from closedloop.settings import load_settings
from closedloop_ops.moto_ext.monitoring import finish_pipeline_execution
from support.events import object_created, sqs_batch
from support.faults import race
from support.handlers import FakeLambdaContext, invoke, load_handler
from support.lines import (
    approved_line_version,
    cooldown,
    drift_alarm_event,
    drift_datapoints,
    drift_line,
    drift_schedule_event,
    endpoint_event,
    endpoint_state,
    endpoints,
    executed_line_version,
    executions_by_group,
    hold_retrain_lock,
    latest_prepared,
    live_line_version,
    owned,
    processing_manifests,
    retrain_lock_execution,
    retraining_lines,
    unwrapped,
    watermark,
)
from support.rollout import Rollout, provision_rollout, shared_service_models
from support.stack import ACCOUNT, REGION, Stack
from support.training import create_pipeline, parameters_of, pipeline_event, prepared_run, processing_event
from support.worlds import approval_status, client, ledger

LOANS, CHURN = "closedloop-loans", "closedloop-churn"  # each line's model group and endpoint


@pytest.fixture(autouse=True, scope="module")
def _service_models_read_once() -> Iterator[None]:
    with shared_service_models():
        yield


@pytest.fixture(autouse=True)
def _fresh_metrics() -> Iterator[None]:
    """Domain calls made without a handler's flush leave metrics behind; they must not leak into another test."""
    from closedloop.observability import metrics

    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


def serve_lines(monkeypatch: pytest.MonkeyPatch, lines: str) -> None:
    """Deploy the stack with other ModelLines (the functions load after this)."""
    monkeypatch.setenv("MODEL_LINES", lines)
    load_settings.cache_clear()


# -- route 1: data arrival, by key prefix ----------------------------------------------------------------


def test_route1_one_batch_of_both_lines_starts_one_run_per_line_naming_only_its_own_objects(stack: Stack) -> None:
    # Given one SQS batch with uploads of both lines, interleaved
    handler = load_handler("start_data_prep")
    keys = {
        "loans": ["raw/loans/2026-11-27/a.csv", "raw/loans/2026-11-27/b.jsonl"],
        "churn": ["raw/churn/2026-11-27/a.csv", "raw/churn/2026-11-27/b.csv", "raw/churn/2026-11-28/c.jsonl"],
    }
    interleaved = [*keys["churn"][:1], *keys["loans"][:1], *keys["churn"][1:], *keys["loans"][1:]]
    uploads = [object_created(stack.data_bucket, key, version_id=f"v-{i}") for i, key in enumerate(interleaved)]
    # When the batch is handled
    response = invoke(handler, sqs_batch(uploads))
    # Then nothing failed and exactly two preparation runs started, one per line
    assert response == {"batchItemFailures": []}
    manifests = processing_manifests(stack)
    assert sorted(name.rsplit("-", 1)[0] for name in manifests) == ["closedloop-prep-churn", "closedloop-prep-loans"]
    by_line = {manifest["dataset"]: manifest for manifest in manifests.values()}
    assert sorted(by_line) == ["churn", "loans"]
    for line, manifest in by_line.items():
        # And each manifest names only its line's objects, its line's policy and its line's output
        assert sorted(o["key"] for o in manifest["objects"]) == sorted(keys[line])
        assert manifest["policy"]["dataset"] == line
        assert manifest["policy"]["label"] == {"loans": "approved", "churn": "renewed"}[line]
        assert manifest["output_uri"] == f"s3://{stack.data_bucket}/prepared/{line}/{manifest['run_id']}/"
        # And the ledger has one decision per run and its objects taken by that run only
        decisions = ledger(stack).decisions_for(f"run:{line}/{manifest['run_id']}")
        assert [(d.action, d.result, d.details["objects"]) for d in decisions] == [
            ("start_data_prep", "started", len(keys[line]))
        ]
        identities = [f"{o['bucket']}/{o['key']}#{o['version_id']}" for o in manifest["objects"]]
        assert set(ledger(stack).consumed_objects(identities).values()) == {manifest["run_id"]}


def test_route1_two_batches_of_the_two_lines_at_once_start_one_run_each(stack: Stack) -> None:
    # Given a batch of loans uploads and a batch of churn uploads, handled by two invocations at once
    handler = unwrapped(load_handler("start_data_prep"))
    batches = {
        line: sqs_batch(
            [
                object_created(stack.data_bucket, f"raw/{line}/at-once/{i}.csv", version_id=f"{line}-{i}")
                for i in range(3)
            ]
        )
        for line in ("loans", "churn")
    }
    # When both are handled at once
    results = race(*[lambda batch=batch: handler(batch) for batch in batches.values()])
    # Then neither failed, and each line got one run with its own three objects
    assert results == [{"batchItemFailures": []}] * 2
    manifests = list(processing_manifests(stack).values())
    assert len(manifests) == 2
    by_line = {m["dataset"]: sorted(o["key"] for o in m["objects"]) for m in manifests}
    assert by_line == {line: [f"raw/{line}/at-once/{i}.csv" for i in range(3)] for line in ("loans", "churn")}


def test_route1_an_upload_of_a_line_not_served_or_never_declared_is_refused(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a stack serving loans and 'payroll' (a name with no line file); churn has a file but is not served
    serve_lines(monkeypatch, "loans,payroll")
    handler = load_handler("start_data_prep")
    good = object_created(stack.data_bucket, "raw/loans/ok.csv", version_id="v-1")
    not_served = object_created(stack.data_bucket, "raw/churn/x.csv", version_id="v-2")
    no_file = object_created(stack.data_bucket, "raw/payroll/x.csv", version_id="v-3")
    batch = sqs_batch([good, not_served, no_file])
    # When the batch is handled
    response = invoke(handler, batch)
    # Then the two records are batch item failures (SQS moves them to the DLQ) and loans' run starts alone
    records = batch["Records"]
    assert {f["itemIdentifier"] for f in response["batchItemFailures"]} == {
        records[1]["messageId"],
        records[2]["messageId"],
    }
    assert [m["dataset"] for m in processing_manifests(stack).values()] == ["loans"]
    # And each refusal is in the ledger as UnknownDataset, naming the line and why
    refusals = {
        line: ledger(stack).decisions_for(f"sqs:{record['messageId']}")
        for line, record in (("churn", records[1]), ("payroll", records[2]))
    }
    assert {
        line: [(d.result, d.details["error"], d.details["dataset"]) for d in found] for line, found in refusals.items()
    } == {
        "churn": [("rejected", "UnknownDataset", "churn")],
        "payroll": [("rejected", "UnknownDataset", "payroll")],
    }
    assert refusals["churn"][0].reason == "no model line 'churn' is deployed in this stack (ModelLines)"
    assert refusals["payroll"][0].reason == "no model line 'payroll' is declared"


# -- route 2: data prepared, by the run's dataset -------------------------------------------------------------


def test_route2_a_finished_churn_run_trains_churn_and_leaves_loans_latest_prepared_alone(stack: Stack) -> None:
    # Given loans' latest prepared data, recorded when a loans run started training
    create_pipeline()
    handler = load_handler("start_training")
    loans_run = prepared_run(stack, "1005aa0000000001", dataset="loans")
    assert invoke(handler, processing_event(loans_run))["result"] == "started"
    loans_before = latest_prepared(stack, "loans")
    assert loans_before is not None and loans_before["prep_run_id"] == loans_run.run_id
    # When a churn run's Processing job completes
    churn_run = prepared_run(stack, "c4a2000000000001", dataset="churn")
    outcome = invoke(handler, processing_event(churn_run))
    # Then the pipeline trains churn's model group on churn's data
    assert outcome["result"] == "started"
    parameters = parameters_of(outcome["execution_arn"])
    assert (parameters["ModelPackageGroupName"], parameters["PrepRunId"]) == (CHURN, churn_run.run_id)
    assert parameters["InputDataUri"] == churn_run.data_uri
    # And only churn's latest prepared data moved; loans' is exactly as it was
    churn_latest = latest_prepared(stack, "churn")
    assert churn_latest is not None
    assert (churn_latest["dataset"], churn_latest["prep_run_id"]) == ("churn", churn_run.run_id)
    assert latest_prepared(stack, "loans") == loans_before
    # And the decision is under churn's run
    assert [d.result for d in ledger(stack).decisions_for(f"run:churn/{churn_run.run_id}")] == ["started"]


def test_route2_runs_of_both_lines_ending_at_once_each_train_their_own_group(stack: Stack) -> None:
    # Given a finished run of each line
    create_pipeline()
    handler = unwrapped(load_handler("start_training"))
    runs = {
        line: prepared_run(stack, run_id, dataset=line)
        for line, run_id in (("loans", "aa00000000000001"), ("churn", "cc00000000000002"))
    }
    # When both Completed events are handled at once
    results = race(*[lambda run=run: handler(processing_event(run)) for run in runs.values()])
    # Then two executions started, each for its own line's group on its own data
    assert [r["result"] for r in results] == ["started", "started"]
    for line, result in zip(runs, results, strict=True):
        parameters = parameters_of(result["execution_arn"])
        assert parameters["ModelPackageGroupName"] == owned(stack, line).model_package_group
        assert parameters["PrepRunId"] == runs[line].run_id
        latest = latest_prepared(stack, line)
        assert latest is not None and latest["prep_run_id"] == runs[line].run_id
    assert {group: len(arns) for group, arns in executions_by_group(stack).items()} == {LOANS: 1, CHURN: 1}


# -- route 3: pipeline finished, by the execution's ModelPackageGroupName ----------------------------------------


@pytest.fixture
def gates(stack: Stack) -> dict[str, Any]:
    """A strong live loans version (AUC 0.95); one ended execution per line, each holding its line's lock,
    whose candidate has AUC 0.72: above churn's floor (0.7, churn.json), below the stack's (0.75)."""
    create_pipeline()
    champion = live_line_version(stack, "loans", auc=0.95)
    world: dict[str, Any] = {"champion": champion, "handler": load_handler("approval_gate")}
    for line in ("loans", "churn"):
        execution, candidate = executed_line_version(stack, line, auc=0.72)
        hold_retrain_lock(stack, line, execution)
        world[line] = {"execution": execution, "candidate": candidate}
    return world


def assert_gated_by_own_line(stack: Stack, gates: dict[str, Any], outcomes: dict[str, dict[str, Any]]) -> None:
    """Each line's candidate was judged by its own floor and its own champion; loans' live version is untouched."""
    # churn: approved under churn's floor, with no champion — loans' live version is not churn's
    churn = ledger(stack).decisions_for(gates["churn"]["candidate"])
    assert [(d.action, d.result) for d in churn] == [("approval_gate", "approved")]
    assert churn[0].details["numbers"]["min_auc"] == 0.7
    assert churn[0].details["numbers"]["min_f1"] == 0.55
    assert churn[0].details["numbers"]["champion"] == "none"
    assert "worse-than-champion" not in outcomes["churn"]["reasons"]
    assert approval_status(stack, gates["churn"]["candidate"]) == "Approved"
    # loans: rejected under the stack's floor, judged against loans' live version
    loans = ledger(stack).decisions_for(gates["loans"]["candidate"])
    assert [(d.action, d.result) for d in loans] == [("approval_gate", "rejected")]
    assert loans[0].details["numbers"]["min_auc"] == 0.75
    assert loans[0].details["numbers"]["champion_version"] == 1
    assert loans[0].details["numbers"]["champion_auc"] == 0.95
    assert "auc-below-minimum" in outcomes["loans"]["reasons"]
    assert approval_status(stack, gates["loans"]["candidate"]) == "Rejected"
    # and the champion itself is untouched
    assert approval_status(stack, gates["champion"]) == "Approved"
    assert endpoint_state(stack, "loans")["live_model_package_arn"] == gates["champion"]
    assert endpoint_state(stack, "churn") == {}


def test_route3_each_gate_judges_by_its_own_line_and_releases_only_its_own_lock(
    stack: Stack, gates: dict[str, Any]
) -> None:
    # Given both lines' executions ended, loans' retraining lock held for loans' execution
    # When churn's Succeeded event arrives first
    churn = invoke(gates["handler"], pipeline_event(gates["churn"]["execution"]))
    # Then churn's lock is released and loans' is still held, bound to loans' execution
    assert (churn["result"], churn["lock_released"]) == ("approved", True)
    assert retrain_lock_execution(stack, "churn") is None
    assert retrain_lock_execution(stack, "loans") == gates["loans"]["execution"]
    # When loans' Succeeded event arrives
    loans = invoke(gates["handler"], pipeline_event(gates["loans"]["execution"]))
    # Then loans' lock is released too, and each version was judged by its own line
    assert (loans["result"], loans["lock_released"]) == ("rejected", True)
    assert retrain_lock_execution(stack, "loans") is None
    assert_gated_by_own_line(stack, gates, {"loans": loans, "churn": churn})


def test_route3_executions_of_both_lines_ending_at_once_are_each_gated_by_their_own_line(
    stack: Stack, gates: dict[str, Any]
) -> None:
    # Given both lines' executions ended, each holding its line's lock
    handler = unwrapped(gates["handler"])
    # When both Succeeded events are handled at once
    loans, churn = race(
        lambda: handler(pipeline_event(gates["loans"]["execution"])),
        lambda: handler(pipeline_event(gates["churn"]["execution"])),
    )
    # Then each released its own lock and was judged by its own line
    assert (loans["result"], loans["lock_released"], churn["result"], churn["lock_released"]) == (
        "rejected",
        True,
        "approved",
        True,
    )
    assert retrain_lock_execution(stack, "loans") is None and retrain_lock_execution(stack, "churn") is None
    assert_gated_by_own_line(stack, gates, {"loans": loans, "churn": churn})


# -- routes 4 and 5: rollout and its outcome, by model group and by endpoint ------------------------------------


@pytest.fixture
def rollout(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Rollout:
    """The rollout world, with loans' v1 live on closedloop-loans and a churn model group."""
    world = provision_rollout(stack, monkeypatch)
    for group in (CHURN, "closedloop-other"):
        world.sm.create_model_package_group(ModelPackageGroupName=group)
    world.live()
    world.notifications()
    return world


def test_route4_a_churn_approval_deploys_to_churn_endpoint_only(stack: Stack, rollout: Rollout) -> None:
    # Given loans' v1 live on its endpoint
    loans_endpoints, loans_state = endpoints(stack), endpoint_state(stack, "loans")
    assert list(loans_endpoints) == [LOANS] and loans_state["status"] == "live"
    # When a churn version approved by the gate arrives
    arn = approved_line_version(rollout, CHURN)
    assert rollout.deliver(rollout.event(arn)) == {"batchItemFailures": []}
    # Then closedloop-churn is created, serving a config built from that version
    served = endpoints(stack)
    assert sorted(served) == [CHURN, LOANS]
    config = rollout.sm.describe_endpoint_config(EndpointConfigName=served[CHURN])
    model = rollout.sm.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    assert model["PrimaryContainer"] == {"ModelPackageName": arn}
    churn_state = endpoint_state(stack, "churn")
    assert (churn_state["pending_model_package_arn"], churn_state["status"]) == (arn, "creating")
    assert [(d.action, d.result) for d in rollout.decisions(arn)] == [("deploy", "deploying")]
    # And loans' endpoint, rollout state and rollout lock are exactly as they were
    assert served[LOANS] == loans_endpoints[LOANS]
    assert endpoint_state(stack, "loans") == loans_state
    assert ledger(stack).get_lock(f"rollout#{LOANS}") is None


def test_route4_a_version_of_a_group_no_line_owns_deploys_nothing(stack: Stack, rollout: Rollout) -> None:
    # Given loans' v1 live
    before, loans_state = endpoints(stack), endpoint_state(stack, "loans")
    # When an approved version of closedloop-other (no line of this stack) arrives
    arn = approved_line_version(rollout, "closedloop-other")
    assert rollout.deliver(rollout.event(arn)) == {"batchItemFailures": []}
    # Then it is recorded as not this stack's, and no endpoint, model or state changed
    [decision] = rollout.decisions(arn)
    assert (decision.action, decision.result) == ("verify_event", "skipped")
    assert "'closedloop-other' is not this stack's" in decision.reason
    assert endpoints(stack) == before
    assert endpoint_state(stack, "loans") == loans_state
    assert ledger(stack).get_state(ledger_keys.endpoint_state("closedloop-other")) is None
    assert not any("other" in name for name in rollout.models())


def test_route4_approvals_of_both_lines_at_once_each_deploy_to_their_own_endpoint(
    stack: Stack, rollout: Rollout
) -> None:
    # Given loans' v2 and churn's v1 approved by the gate
    loans_v2, churn_v1 = approved_line_version(rollout, LOANS), approved_line_version(rollout, CHURN)
    approvals = rollout.deploy.approvals
    # When their approvals are handled by two invocations at once
    results = race(
        *[
            lambda arn=arn: approvals.handle(
                sqs_batch([rollout.event(arn)], queue_arn=rollout.queue_arn), FakeLambdaContext()
            )
            for arn in (loans_v2, churn_v1)
        ]
    )
    # Then neither waited for the other (each endpoint has its own rollout lock) and each went to its own endpoint
    assert results == [{"batchItemFailures": []}] * 2
    loans_state, churn_state = endpoint_state(stack, "loans"), endpoint_state(stack, "churn")
    assert (loans_state["pending_model_package_arn"], loans_state["status"]) == (loans_v2, "updating")
    assert loans_state["live_model_package_arn"] == rollout.versions[1]
    assert (churn_state["pending_model_package_arn"], churn_state["status"]) == (churn_v1, "creating")
    assert churn_state["live_model_package_arn"] == ""
    assert sorted(endpoints(stack)) == [CHURN, LOANS]


def test_route5_a_churn_endpoint_event_records_churn_pending_deployment_only(stack: Stack, rollout: Rollout) -> None:
    # Given a deployment pending on each endpoint: loans v2 (update), churn v1 (create)
    loans_v2, churn_v1 = approved_line_version(rollout, LOANS), approved_line_version(rollout, CHURN)
    assert rollout.deliver(rollout.event(loans_v2), rollout.event(churn_v1)) == {"batchItemFailures": []}
    loans_pending = endpoint_state(stack, "loans")
    # When closedloop-churn's in-service event arrives
    result = rollout.outcome(endpoint_event(rollout, CHURN))
    # Then churn's pending version is live, recorded against churn's version
    assert (result["result"], result["model_package_arn"]) == ("live", churn_v1)
    churn_state = endpoint_state(stack, "churn")
    assert (churn_state["live_model_package_arn"], churn_state["status"]) == (churn_v1, "live")
    assert [(d.action, d.result) for d in rollout.decisions(churn_v1) if d.route == "deployment-outcome"] == [
        ("record_outcome", "live")
    ]
    # And loans' deployment is still pending, untouched, with no outcome recorded for it
    assert endpoint_state(stack, "loans") == loans_pending
    assert [d for d in rollout.decisions(loans_v2) if d.route == "deployment-outcome"] == []
    # When both endpoints' events arrive at once
    recorder = unwrapped(rollout.record)
    loans, churn = race(
        lambda: recorder(endpoint_event(rollout, LOANS)), lambda: recorder(endpoint_event(rollout, CHURN))
    )
    # Then loans' v2 goes live on loans' endpoint and churn has nothing new
    assert (loans["result"], loans["model_package_arn"], loans["endpoint_name"]) == ("live", loans_v2, LOANS)
    assert (churn["result"], churn["endpoint_name"]) == ("unchanged", CHURN)
    assert endpoint_state(stack, "loans")["live_model_package_arn"] == loans_v2
    assert endpoint_state(stack, "churn")["live_model_package_arn"] == churn_v1


# -- route 6: alarms, by alarm name ------------------------------------------------------------------------


@pytest.fixture
def alarms(stack: Stack) -> Any:
    create_pipeline()
    retraining_lines(stack)
    return load_handler("start_retraining")


def test_route6_a_churn_drift_alarm_retrains_churn_and_takes_only_churn_lock_and_cooldown(
    stack: Stack, alarms: Any
) -> None:
    # Given both lines with prepared data and drift alarms, neither retraining
    # When churn's feature drift alarm enters ALARM
    outcome = invoke(alarms, drift_alarm_event(stack, "churn", at=datetime.now(UTC)))
    # Then the pipeline starts for churn's model group on churn's prepared data
    assert (outcome["result"], outcome["model_group"]) == ("started", CHURN)
    parameters = parameters_of(outcome["execution_arn"])
    assert (parameters["ModelPackageGroupName"], parameters["PrepRunId"]) == (CHURN, "run-churn")
    # And churn's lock is bound to it and churn's cooldown runs; loans' lock and cooldown do not exist
    assert retrain_lock_execution(stack, "churn") == outcome["execution_arn"]
    churn_cooldown = cooldown(stack, "churn")
    assert churn_cooldown is not None and churn_cooldown["execution_arn"] == outcome["execution_arn"]
    assert retrain_lock_execution(stack, "loans") is None
    assert cooldown(stack, "loans") is None
    assert executions_by_group(stack) == {CHURN: [outcome["execution_arn"]]}


def test_route6_loans_cooldown_does_not_block_churn(stack: Stack, alarms: Any) -> None:
    # Given loans retrained on its alarm (its cooldown runs for hours) and that execution ended
    now = datetime.now(UTC)
    loans = invoke(alarms, drift_alarm_event(stack, "loans", at=now - timedelta(minutes=5)))
    assert loans["result"] == "started"
    finish_pipeline_execution(ACCOUNT, REGION, loans["execution_arn"], "Succeeded")
    loans_cooldown = cooldown(stack, "loans")
    assert loans_cooldown is not None and datetime.fromisoformat(loans_cooldown["until"]) > now
    # When churn's alarm enters ALARM
    churn = invoke(alarms, drift_alarm_event(stack, "churn", at=now))
    # Then churn retrains, and loans' cooldown is exactly as it was
    assert (churn["result"], churn["model_group"], churn["suppressed_because"]) == ("started", CHURN, None)
    assert cooldown(stack, "loans") == loans_cooldown


def test_route6_a_running_loans_retraining_does_not_block_churn(stack: Stack, alarms: Any) -> None:
    # Given loans retraining on its alarm: its execution of the shared pipeline is still running
    now = datetime.now(UTC)
    loans = invoke(alarms, drift_alarm_event(stack, "loans", at=now - timedelta(minutes=5)))
    assert loans["result"] == "started"
    # When churn's alarm enters ALARM
    churn = invoke(alarms, drift_alarm_event(stack, "churn", at=now))
    # Then churn retrains too: loans' run holds loans' lock, not churn's
    assert (churn["result"], churn["suppressed_because"], churn["reason"]) == ("started", None, "")
    assert {group: len(arns) for group, arns in executions_by_group(stack).items()} == {LOANS: 1, CHURN: 1}


def test_route6_an_alarm_storm_on_both_lines_at_once_starts_one_execution_per_line(stack: Stack, alarms: Any) -> None:
    # Given every drift alarm of both lines entering ALARM at the same moment
    now = datetime.now(UTC)
    events = [
        drift_alarm_event(stack, line, kind, at=now)
        for kind in ("drift-features", "drift-predictions", "drift-bias")
        for line in ("loans", "churn")
    ]
    handler = unwrapped(alarms)
    # When all six are handled at once
    results = race(*[lambda event=event: handler(event) for event in events])
    # Then each line started exactly one retraining and suppressed the rest; none failed
    assert not [r for r in results if isinstance(r, Exception)]
    started = sorted((r["model_group"], r["result"]) for r in results if r["result"] == "started")
    assert started == [(CHURN, "started"), (LOANS, "started")], [
        (r["model_group"], r["result"], r["suppressed_because"]) for r in results
    ]
    assert {group: len(arns) for group, arns in executions_by_group(stack).items()} == {LOANS: 1, CHURN: 1}
    # And each line's lock and cooldown name that line's own execution
    for line, group in (("loans", LOANS), ("churn", CHURN)):
        [execution] = executions_by_group(stack)[group]
        assert retrain_lock_execution(stack, line) == execution
        line_cooldown = cooldown(stack, line)
        assert line_cooldown is not None and line_cooldown["execution_arn"] == execution


# -- route 7: drift schedule, by the schedule's input -------------------------------------------------------------


def test_route7_churn_schedule_measures_churn_endpoint_only(stack: Stack) -> None:
    # Given both endpoints live with their baselines and 600 captured records each
    packages = {line: drift_line(stack, line, records=600, seed=2 + i) for i, line in enumerate(("loans", "churn"))}
    handler = load_handler("drift_monitor")
    # When churn's schedule runs
    result = invoke(handler, drift_schedule_event(stack, "churn", "exec-churn-1"))
    # Then churn's endpoint is measured against churn's live version, and only its metrics are published
    assert (result["result"], result["endpoint"], result["model_package_arn"]) == (
        "published",
        CHURN,
        packages["churn"],
    )
    assert result["records"] == 600
    assert drift_datapoints(stack, CHURN) == 1
    assert drift_datapoints(stack, LOANS) == 0
    # And only churn's watermark moved and only churn's endpoint has a drift decision
    churn_mark = watermark(stack, "churn")
    assert churn_mark is not None and churn_mark["model_package_arn"] == packages["churn"]
    assert watermark(stack, "loans") is None
    assert [d.result for d in ledger(stack).decisions_for(f"drift:{CHURN}")] == ["published"]
    assert ledger(stack).decisions_for(f"drift:{LOANS}") == []
    # When both lines' schedules run at once
    monitor = unwrapped(handler)
    loans, churn = race(
        lambda: monitor(drift_schedule_event(stack, "loans", "exec-loans-2")),
        lambda: monitor(drift_schedule_event(stack, "churn", "exec-churn-2")),
    )
    # Then loans measures its own 600 records; churn has nothing new past its watermark
    assert (loans["result"], loans["endpoint"], loans["records"]) == ("published", LOANS, 600)
    assert (churn["result"], churn["endpoint"], churn["records"]) == ("insufficient-records", CHURN, 0)
    assert (drift_datapoints(stack, LOANS), drift_datapoints(stack, CHURN)) == (1, 1)
    assert watermark(stack, "churn") == churn_mark


@pytest.mark.parametrize(
    ("lines", "line"),
    [("loans,churn", "payroll"), ("loans", "churn")],
    ids=["never-declared", "declared-not-served"],
)
def test_route7_a_schedule_naming_a_line_not_served_is_an_error_naming_it(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, lines: str, line: str
) -> None:
    # Given a stack serving `lines`
    serve_lines(monkeypatch, lines)
    handler = load_handler("drift_monitor")
    # When a schedule's input names `line`
    with pytest.raises(UnknownDatasetError) as raised:
        invoke(handler, drift_schedule_event(stack, line, "exec-1"))
    # Then the error names the line, and nothing was measured or recorded
    assert raised.value.message == f"model line {line!r} is not deployed in this stack (ModelLines)"
    assert raised.value.context["dataset"] == line
    assert client(stack, "cloudwatch").list_metrics(Namespace=stack.settings.drift_metrics_namespace)["Metrics"] == []
    assert ledger(stack).decisions_for(f"drift:closedloop-{line}") == []
