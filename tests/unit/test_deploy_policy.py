"""The rollout's rules: who may release a version, version ordering, endpoint statuses, backoff, outcomes."""

from __future__ import annotations

import pytest

from closedloop.deploy.models import Endpoint, EndpointState, ModelPackage
from closedloop.deploy.outcome import classify
from closedloop.deploy.policy import (
    approval_verdict,
    backoff_seconds,
    deployability_problem,
    endpoint_plan,
    identity_matches,
    ordering,
    rejection_verdict,
    rollback_target,
    select_rollback_alarms,
)
from closedloop.settings import Settings
from support.stack import stack_env

ACCT = "123456789012"
OFFICER = f"arn:aws:iam::{ACCT}:role/ComplianceOfficer"
GATE = f"arn:aws:iam::{ACCT}:role/closedloop-ApprovalGateFunctionRole-X1"


def settings(**overrides: str) -> Settings:
    return Settings.from_environ({**stack_env(), "APPROVAL_GATE_ROLE_ARN": GATE, **overrides})


def package(version: int = 3, *, by: str = "", status: str = "Approved", **fields: object) -> ModelPackage:
    values: dict[str, object] = {"package_status": "Completed", **fields}
    return ModelPackage(
        arn=f"arn:aws:sagemaker:eu-west-1:{ACCT}:model-package/closedloop-loans/{version}",
        group="closedloop-loans",
        version=version,
        approval_status=status,
        approved_by=by,
        **values,  # type: ignore[arg-type]
    )


# -- who approved ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identity", "allowed", "matches"),
    [
        # an assumed-role session is its role, with or without a path on the role
        (f"arn:aws:sts::{ACCT}:assumed-role/ComplianceOfficer/jane@example.com", OFFICER, True),
        (
            f"arn:aws:sts::{ACCT}:assumed-role/ComplianceOfficer/jane",
            f"arn:aws:iam::{ACCT}:role/gov/ComplianceOfficer",
            True,
        ),
        # the same role name in another account, partition or with another name is not
        ("arn:aws:sts::999999999999:assumed-role/ComplianceOfficer/jane", OFFICER, False),
        (f"arn:aws-cn:sts::{ACCT}:assumed-role/ComplianceOfficer/jane", OFFICER, False),
        (f"arn:aws:sts::{ACCT}:assumed-role/ComplianceOfficerX/jane", OFFICER, False),
        (f"arn:aws:sts::{ACCT}:assumed-role/Compliance/jane", OFFICER, False),
        # users match exactly
        (f"arn:aws:iam::{ACCT}:user/jane", f"arn:aws:iam::{ACCT}:user/jane", True),
        (f"arn:aws:iam::{ACCT}:user/janet", f"arn:aws:iam::{ACCT}:user/jane", False),
        # a user is not a role of the same name; a role ARN is not a session
        (f"arn:aws:iam::{ACCT}:user/ComplianceOfficer", OFFICER, False),
        (OFFICER, f"arn:aws:iam::{ACCT}:user/ComplianceOfficer", False),
        # a listed session matches only itself
        (
            f"arn:aws:sts::{ACCT}:assumed-role/ComplianceOfficer/jane",
            f"arn:aws:sts::{ACCT}:assumed-role/ComplianceOfficer/bob",
            False,
        ),
        # federated users, root, garbage and nobody
        (f"arn:aws:sts::{ACCT}:federated-user/ComplianceOfficer", OFFICER, False),
        (f"arn:aws:iam::{ACCT}:root", OFFICER, False),
        ("not-an-arn", OFFICER, False),
        ("", OFFICER, False),
        (f"arn:aws:sts::{ACCT}:assumed-role/ComplianceOfficer", OFFICER, False),
    ],
)
def test_identity_matching(identity: str, allowed: str, matches: bool) -> None:
    assert identity_matches(identity, allowed) is matches


def test_manual_mode_needs_an_allow_listed_approver() -> None:
    manual = settings(APPROVAL_MODE="manual", APPROVERS=f"{OFFICER}, arn:aws:iam::{ACCT}:user/cto")
    officer = package(by=f"arn:aws:sts::{ACCT}:assumed-role/ComplianceOfficer/jane")
    assert approval_verdict(officer, manual).allowed
    assert approval_verdict(officer, manual).approval == f"manual:{officer.approved_by}"
    assert approval_verdict(package(by=f"arn:aws:iam::{ACCT}:user/cto"), manual).allowed
    # the gate's role is not an approver in manual mode
    gate = package(by=f"arn:aws:sts::{ACCT}:assumed-role/closedloop-ApprovalGateFunctionRole-X1/fn")
    refused = approval_verdict(gate, manual)
    assert not refused.allowed and "allow-list" in refused.reason
    # nobody listed: nobody may approve
    assert "no approvers" in approval_verdict(officer, settings(APPROVAL_MODE="manual", APPROVERS="")).reason


def test_auto_mode_needs_the_gates_role() -> None:
    gate = package(by=f"arn:aws:sts::{ACCT}:assumed-role/closedloop-ApprovalGateFunctionRole-X1/fn")
    officer = package(by=f"arn:aws:sts::{ACCT}:assumed-role/ComplianceOfficer/jane")
    assert approval_verdict(gate, settings()).allowed
    assert not approval_verdict(officer, settings()).allowed
    assert not approval_verdict(gate, settings(APPROVAL_GATE_ROLE_ARN="")).allowed
    assert not approval_verdict(package(by=""), settings()).allowed


def test_the_live_version_may_be_rejected_by_the_gate_or_an_approver_only() -> None:
    s = settings(APPROVERS=OFFICER)
    assert rejection_verdict(package(by=f"arn:aws:sts::{ACCT}:assumed-role/ComplianceOfficer/j"), s).allowed
    assert rejection_verdict(
        package(by=f"arn:aws:sts::{ACCT}:assumed-role/closedloop-ApprovalGateFunctionRole-X1/f"), s
    ).allowed
    assert not rejection_verdict(package(by=f"arn:aws:sts::{ACCT}:assumed-role/Intern/x"), s).allowed


def test_what_cannot_serve_the_inference_contract_is_not_deployable() -> None:
    assert deployability_problem(package()) is None
    assert deployability_problem(package(content_types=("text/csv", "application/json"))) is None
    assert "text/csv" in (deployability_problem(package(content_types=("application/json",))) or "")
    assert "text/csv" in (deployability_problem(package(response_types=("application/json",))) or "")
    assert "InProgress" in (deployability_problem(package(package_status="InProgress")) or "")


# -- ordering, endpoint, rollback target -------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "live", "expected"),
    [(4, 3, "newer"), (3, 3, "same"), (2, 3, "older"), (10, 9, "newer"), (1, None, "no_live_version")],
)
def test_ordering(target: int, live: int | None, expected: str) -> None:
    assert ordering(target, live) == expected


@pytest.mark.parametrize(
    ("status", "plan"),
    [
        (None, "create"),
        ("InService", "update"),
        ("Creating", "busy"),
        ("Updating", "busy"),
        ("SystemUpdating", "busy"),
        ("RollingBack", "busy"),
        ("Deleting", "busy"),
        ("Failed", "unusable"),
        ("OutOfService", "unusable"),
        ("UpdateRollbackFailed", "unusable"),
    ],
)
def test_endpoint_plan(status: str | None, plan: str) -> None:
    assert endpoint_plan(status) == plan


def test_the_rollback_target_is_the_newest_older_approved_version_never_rolled_back() -> None:
    candidates = [package(v) for v in (6, 5, 4, 3, 2, 1)]
    marked = {candidates[3].arn}  # v3 was rolled back once
    target = rollback_target(
        candidates, below_version=5, rolled_back=lambda arn: arn in marked, allowed=lambda p: p.version != 4
    )
    assert target is not None and target.version == 2
    assert rollback_target(candidates, below_version=1, rolled_back=lambda _: False, allowed=lambda _: True) is None
    rejected = [package(2, status="Rejected")]
    assert rollback_target(rejected, below_version=3, rolled_back=lambda _: False, allowed=lambda _: True) is None


def test_backoff_grows_then_caps_at_fifteen_minutes() -> None:
    assert [backoff_seconds(n) for n in range(1, 8)] == [60, 120, 240, 480, 900, 900, 900]
    assert backoff_seconds(0) == 60 and backoff_seconds(10_000) == 900


def test_sixty_receives_outlast_the_longest_rollout() -> None:
    # the queue's maxReceiveCount (template) against MaxExecutionTimeoutSeconds (max 8 h) + termination wait (1 h)
    assert sum(backoff_seconds(n) for n in range(1, 60)) > 8 * 3600 + 3600


def test_alarms_already_firing_or_missing_do_not_guard() -> None:
    configured = ("a-5xx", "a-latency", "a-drift")
    selection = select_rollback_alarms(configured, {"a-5xx": "OK", "a-latency": "ALARM"})
    assert selection.guarding == ("a-5xx",)
    assert selection.already_in_alarm == ("a-latency",)
    assert selection.missing == ("a-drift",)
    assert select_rollback_alarms(configured, {"a-drift": "INSUFFICIENT_DATA"}).guarding == ("a-drift",)


# -- route 5: what the endpoint means for the pending deployment ------------------------------------------


def endpoint(status: str = "InService", config: str = "cfg-3") -> Endpoint:
    return Endpoint(name="e", arn=f"arn:aws:sagemaker:eu-west-1:{ACCT}:endpoint/e", status=status, config_name=config)


PENDING = EndpointState(endpoint_config="cfg-2", pending_endpoint_config="cfg-3", status="updating")
SETTLED = EndpointState(endpoint_config="cfg-3", status="live")


@pytest.mark.parametrize(
    ("state", "now", "verdict"),
    [
        (PENDING, endpoint("Updating", "cfg-2"), "in_progress"),
        (PENDING, endpoint("RollingBack", "cfg-2"), "in_progress"),
        (PENDING, endpoint("InService", "cfg-3"), "live"),
        (PENDING, endpoint("InService", "cfg-2"), "rolled_back"),
        (PENDING, endpoint("Failed", "cfg-3"), "failed"),
        (PENDING, endpoint("UpdateRollbackFailed", "cfg-3"), "failed"),
        (SETTLED, endpoint("InService", "cfg-3"), "unchanged"),
        (SETTLED, endpoint("InService", "cfg-1"), "reconciled"),
        (SETTLED, endpoint("Failed", "cfg-3"), "endpoint_failed"),
        (SETTLED.model_copy(update={"status": "failed"}), endpoint("Failed", "cfg-3"), "unchanged"),
    ],
)
def test_classify(state: EndpointState, now: Endpoint, verdict: str) -> None:
    assert classify(state, now) == verdict
