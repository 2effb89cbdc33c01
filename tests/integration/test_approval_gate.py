"""Route 3 end to end on moto: an ended execution → lock released; its version approved, rejected or sent on."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import boto3
import pytest

from closedloop import ledger_keys
from closedloop.errors import ForeignEventError, InvalidEventError
from closedloop.retrain_lock import RetrainLock
from closedloop_ops.moto_ext.pipelines import record_execution_step
from support.handlers import invoke, load_handler
from support.stack import ACCOUNT, REGION, Stack, notification_inbox
from support.training import (
    bias_report,
    create_pipeline,
    evaluation_report,
    pipeline_event,
    prepared_run,
    register_version,
    start_execution,
)
from support.worlds import ledger

Inbox = Callable[[], list[dict[str, Any]]]
GROUP = "closedloop-loans"


@pytest.fixture
def inbox(stack: Stack) -> Inbox:
    """The notifications published to the stack's topic."""
    return notification_inbox(stack.settings, "gate-inbox")


@pytest.fixture
def gate(stack: Stack) -> Any:
    create_pipeline()
    return load_handler("approval_gate")


def package(arn: str) -> dict[str, Any]:
    described: dict[str, Any] = boto3.client("sagemaker", region_name=REGION).describe_model_package(
        ModelPackageName=arn
    )
    return described


def executed(stack: Stack, **register: Any) -> tuple[str, str]:
    """An execution that registered a version (recorded as its RegisterModel step); returns both ARNs."""
    execution = start_execution()
    arn = register_version(stack, execution, prepared=register.pop("prepared", None) or prepared_run(stack), **register)
    record_execution_step(ACCOUNT, REGION, execution, name="Register", metadata={"RegisterModel": {"Arn": arn}})
    return execution, arn


def test_auto_mode_approves_a_version_whose_evidence_passes_and_records_why(
    stack: Stack, gate: Any, inbox: Inbox
) -> None:
    # Given an execution that registered a good version, and held the retraining lock
    execution, arn = executed(stack)
    lock = RetrainLock(ledger(stack), lease=timedelta(hours=4))
    lock.acquire(GROUP, "alarm:drift@t", "drift")
    lock.bind_execution(GROUP, "alarm:drift@t", execution)
    # When its Succeeded event arrives
    outcome = invoke(gate, pipeline_event(execution))
    # Then the version is Approved, the description carries the policy version and every number
    assert (outcome["result"], outcome["found_by"], outcome["lock_released"]) == ("approved", "steps", True)
    described = package(arn)
    assert described["ModelApprovalStatus"] == "Approved"
    description = described["ApprovalDescription"]
    assert description.startswith("closedloop approval-policy/1 (auto): APPROVED")
    for number in ("auc=0.8", "f1=0.8", "accuracy=0.75", "majority_class_accuracy=0.66", "di[group=B]=0.94"):
        assert number in description
    assert "pii_clean=True" in description and len(description) <= 1024
    # and the approval is the gate's own identity (what route 4 verifies)
    assert described["LastModifiedBy"]["IamIdentity"]["Arn"]
    # and the ledger holds the same decision; the lock is free; approvers and operators are told
    [decision] = ledger(stack).decisions_for(arn)
    assert (decision.route, decision.action, decision.result) == ("pipeline-finished", "approval_gate", "approved")
    assert decision.details["numbers"]["auc"] == 0.8 and decision.details["policy_version"] == "approval-policy/1"
    assert decision.decision_id in description
    assert lock.current(GROUP) is None
    [message] = inbox()
    assert message["policy_says"] == "approve" and message["version"] == 1


def test_auto_mode_rejects_with_every_reason(stack: Stack, gate: Any) -> None:
    execution, arn = executed(stack, evaluation=evaluation_report(auc=0.70, f1=0.55), bias=bias_report(dppl=0.2))
    outcome = invoke(gate, pipeline_event(execution))
    assert outcome["result"] == "rejected"
    assert {"auc-below-minimum", "f1-below-minimum", "dppl-above-maximum"} <= set(outcome["reasons"])
    described = package(arn)
    assert described["ModelApprovalStatus"] == "Rejected"
    assert "auc-below-minimum: auc 0.7000 < 0.75" in described["ApprovalDescription"]
    # the lineage metadata survives the update
    assert described["CustomerMetadataProperties"]["closedloop:pipeline-execution"] == execution


def test_a_duplicate_event_changes_nothing_twice(stack: Stack, gate: Any, inbox: Inbox) -> None:
    execution, arn = executed(stack)
    first = invoke(gate, pipeline_event(execution))
    again = invoke(gate, pipeline_event(execution))
    renamed = invoke(gate, pipeline_event(execution, event_id="a-new-envelope-id"))
    assert first == again and first["result"] == "approved"
    assert len(inbox()) == 1  # one notification
    # a copy with a new envelope id finds the version decided already: recorded, nothing changed
    assert renamed["result"] in {"approved", "skipped"}
    assert package(arn)["ModelApprovalStatus"] == "Approved"
    assert [d.result for d in ledger(stack).decisions_for(arn)].count("approved") == 1


@pytest.mark.parametrize(
    ("register", "code"),
    [
        ({"write_evaluation": False}, "evaluation-missing"),
        ({"write_bias": False}, "bias-missing"),
        ({"bias": bias_report(di=None)}, "bias-metric-missing"),
        ({"prepared": "unclean"}, "pii-not-clean"),
        ({"metadata": {"closedloop:prepared-manifest": "s3://nowhere-bucket/x/manifest.json"}}, "pii-report-missing"),
    ],
)
def test_missing_or_bad_evidence_is_a_rejection_never_an_approval(
    stack: Stack, gate: Any, register: dict[str, Any], code: str
) -> None:
    if register.get("prepared") == "unclean":
        register["prepared"] = prepared_run(stack, pii_clean=False)
    execution, arn = executed(stack, **register)
    outcome = invoke(gate, pipeline_event(execution))
    assert outcome["result"] == "rejected" and code in outcome["reasons"]
    assert package(arn)["ModelApprovalStatus"] == "Rejected"


def test_a_version_worse_than_the_live_one_is_rejected(stack: Stack, gate: Any) -> None:
    # Given version 1 is live with AUC 0.86
    live_execution, live = executed(stack, evaluation=evaluation_report(auc=0.86))
    boto3.client("sagemaker", region_name=REGION).update_model_package(
        ModelPackageArn=live, ModelApprovalStatus="Approved"
    )
    ledger(stack).put_state(
        ledger_keys.endpoint_state("closedloop-loans"), {"live_model_package_arn": live, "live_version": 1}
    )
    # When version 2 (AUC 0.80) finishes
    execution, arn = executed(stack)
    outcome = invoke(gate, pipeline_event(execution))
    # Then it is rejected against the champion
    assert outcome["result"] == "rejected" and outcome["reasons"] == ["worse-than-champion"]
    assert "champion_version=1" in package(arn)["ApprovalDescription"]
    assert live_execution != execution


def test_a_late_success_of_an_older_execution_never_approves_an_older_version(stack: Stack, gate: Any) -> None:
    # Given two executions: the older registered version 1, the newer version 2
    older_execution, older = executed(stack)
    newer_execution, newer = executed(stack)
    # When the newer one's Succeeded arrives first and is approved
    assert invoke(gate, pipeline_event(newer_execution))["result"] == "approved"
    # Then the older one's late Succeeded is rejected as older than the approved version
    outcome = invoke(gate, pipeline_event(older_execution))
    assert outcome["result"] == "rejected" and "older-than-champion" in outcome["reasons"]
    assert (package(older)["ModelApprovalStatus"], package(newer)["ModelApprovalStatus"]) == ("Rejected", "Approved")


def test_manual_mode_leaves_the_version_pending_and_tells_the_approvers(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, inbox: Inbox
) -> None:
    monkeypatch.setenv("APPROVAL_MODE", "manual")
    create_pipeline()
    gate = load_handler("approval_gate")
    execution, arn = executed(stack)
    outcome = invoke(gate, pipeline_event(execution))
    assert outcome["result"] == "pending" and outcome["mode"] == "manual"
    described = package(arn)
    assert described["ModelApprovalStatus"] == "PendingManualApproval"
    assert "the policy recommends APPROVAL" in described["ApprovalDescription"]
    [message] = inbox()
    assert message["approvers"] == [f"arn:aws:iam::{ACCOUNT}:role/ComplianceOfficer"]
    assert message["numbers"]["auc"] == 0.8 and message["policy_says"] == "approve"
    assert [d.result for d in ledger(stack).decisions_for(arn)] == ["pending"]


def test_without_step_metadata_the_version_is_found_by_its_lineage(stack: Stack, gate: Any) -> None:
    execution = start_execution()
    arn = register_version(stack, execution, prepared=prepared_run(stack))  # no RegisterModel step recorded
    outcome = invoke(gate, pipeline_event(execution))
    assert (outcome["result"], outcome["found_by"], outcome["model_package_arn"]) == ("approved", "metadata", arn)


def test_an_execution_that_registered_nothing_is_a_recorded_error(stack: Stack, gate: Any, inbox: Inbox) -> None:
    execution = start_execution()
    outcome = invoke(gate, pipeline_event(execution))
    assert outcome["result"] == "no-model"
    [decision] = ledger(stack).decisions_for(f"execution:{execution}")
    assert decision.result == "no-model"
    assert inbox()[0]["severity"] == "ERROR"


def test_a_version_in_another_group_is_an_error_and_is_left_alone(stack: Stack, gate: Any) -> None:
    execution = start_execution()
    arn = register_version(stack, execution, group="someone-elses-models", prepared=prepared_run(stack))
    record_execution_step(ACCOUNT, REGION, execution, name="Register", metadata={"RegisterModel": {"Arn": arn}})
    outcome = invoke(gate, pipeline_event(execution))
    assert outcome["result"] == "error" and "outside the model group" in outcome["reason"]
    assert package(arn)["ModelApprovalStatus"] == "PendingManualApproval"


def test_a_version_whose_lineage_names_another_execution_is_an_error(stack: Stack, gate: Any) -> None:
    execution = start_execution()
    arn = register_version(stack, start_execution(), prepared=prepared_run(stack))
    record_execution_step(ACCOUNT, REGION, execution, name="Register", metadata={"RegisterModel": {"Arn": arn}})
    outcome = invoke(gate, pipeline_event(execution))
    assert outcome["result"] == "error" and "does not name this execution" in outcome["reason"]
    assert package(arn)["ModelApprovalStatus"] == "PendingManualApproval"


def test_a_version_someone_already_decided_is_left_alone(stack: Stack, gate: Any) -> None:
    execution, arn = executed(stack)
    boto3.client("sagemaker", region_name=REGION).update_model_package(
        ModelPackageArn=arn, ModelApprovalStatus="Rejected", ApprovalDescription="rejected by a person"
    )
    outcome = invoke(gate, pipeline_event(execution))
    assert outcome["result"] == "skipped"
    assert package(arn)["ApprovalDescription"] == "rejected by a person"


@pytest.mark.parametrize(("status", "severity"), [("Failed", "ERROR"), ("Stopped", "WARNING")])
def test_a_failed_or_stopped_execution_is_reported_and_frees_the_lock(
    stack: Stack, gate: Any, inbox: Inbox, status: str, severity: str
) -> None:
    execution = start_execution()
    lock = RetrainLock(ledger(stack), lease=timedelta(hours=4))
    lock.acquire(GROUP, "alarm:x@t", "drift")
    lock.bind_execution(GROUP, "alarm:x@t", execution)
    outcome = invoke(gate, pipeline_event(execution, status, failureReason="Step Train failed: AlgorithmError"))
    assert (outcome["result"], outcome["lock_released"]) == ("execution-failed", True)
    assert lock.current(GROUP) is None
    [decision] = ledger(stack).decisions_for(f"execution:{execution}")
    assert decision.result == status.lower()
    [message] = inbox()
    assert (message["severity"], message["status"]) == (severity, status)


def test_the_lock_of_another_execution_is_not_released(stack: Stack, gate: Any) -> None:
    running = start_execution()
    lock = RetrainLock(ledger(stack), lease=timedelta(hours=4))
    lock.acquire(GROUP, "alarm:y@t", "drift")
    lock.bind_execution(GROUP, "alarm:y@t", running)
    outcome = invoke(gate, pipeline_event(start_execution(), "Failed"))
    assert outcome["lock_released"] is False
    current = lock.current(GROUP)
    assert current is not None and current.execution_arn == running


def test_an_execution_of_another_pipeline_is_invalid(stack: Stack, gate: Any) -> None:
    create_pipeline("someone-elses-pipeline")
    other = start_execution("someone-elses-pipeline")
    with pytest.raises(InvalidEventError, match="another pipeline"):
        invoke(gate, pipeline_event(other))


@pytest.mark.parametrize(
    ("account", "region", "envelope"),
    [
        ("999999999999", REGION, "999999999999"),  # another account's pipeline of the same name
        (ACCOUNT, "us-east-1", ACCOUNT),  # ours by account, but in another region
        (ACCOUNT, REGION, "999999999999"),  # our ARN, forwarded from another account's bus
    ],
)
def test_an_execution_that_is_not_ours_is_answered_not_ours_and_decides_nothing(
    stack: Stack, gate: Any, inbox: Inbox, account: str, region: str, envelope: str
) -> None:
    # Given an execution of a pipeline named like ours, owned elsewhere (nothing about it here)
    foreign = f"arn:aws:sagemaker:{region}:{account}:pipeline/closedloop-training/execution/f0r31gn0000x"
    event = pipeline_event(foreign)
    event["account"] = envelope
    # When its Succeeded event reaches the gate
    with pytest.raises(ForeignEventError) as caught:
        invoke(gate, event)
    # Then the answer is "not ours": structured, not retryable, naming whose it is and whose we are
    assert caught.value.code == "ForeignEvent" and not caught.value.retryable
    assert caught.value.message.startswith("not ours:") and ACCOUNT in caught.value.message
    assert caught.value.context["execution_arn"] == foreign
    # And no decision about it: no "no-model", no approval, no notification
    assert ledger(stack).decisions_for(f"execution:{foreign}") == []
    assert inbox() == []


def test_epoch_millisecond_times_are_handled_like_iso(stack: Stack, gate: Any) -> None:
    execution, _ = executed(stack)
    event = pipeline_event(execution)
    event["detail"]["executionStartTime"] = 1795771280000
    event["detail"]["executionEndTime"] = "1795772934000"
    assert invoke(gate, event)["result"] == "approved"


def test_a_non_terminal_status_is_an_invalid_event(stack: Stack, gate: Any) -> None:
    with pytest.raises(InvalidEventError):
        invoke(gate, pipeline_event(start_execution(), "Executing"))
