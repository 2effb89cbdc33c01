"""`closedloop approve` / `reject` in manual approval mode, on the local loop: the rollout route reacts.

The stack runs with `ApprovalMode=manual` and the ComplianceOfficer role on the allow-list. New data
is uploaded, trained on and registered; the gate leaves the version pending with its
recommendation. The command line then runs under the credentials it is given — an assumed role,
as on AWS — and the rollout route (which runs under its own role) decides whether to deploy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from closedloop.ledger import Ledger
from closedloop_ops.local.demo import DEMO_PARAMETERS, Demo
from closedloop_ops.local.loop import LocalLoop
from support.cli import (
    ACCOUNT,
    OFFICER_ROLE,
    SCIENTIST_ROLE,
    assume,
    fresh_moto,
    local_args,
    register_copy,
    reset_server,
    run,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    fresh_moto()
    # one model line: a version is named by its number alone, as in a stack that serves one line
    parameters = {**DEMO_PARAMETERS, "ModelLines": "loans", "ApprovalMode": "manual", "Approvers": OFFICER_ROLE}
    with LocalLoop.start(stack_name="closedloop-approvals", parameters=parameters) as loop:
        demo = Demo(loop=loop, out_dir=tmp_path_factory.mktemp("approvals"), say=lambda _: None)
        demo.setup()
        try:
            demo.upload()
            demo.settle()  # preparation → training pipeline → the gate leaves version 1 pending
            yield demo
        finally:
            demo.teardown()
            reset_server(loop.stack.endpoint_url)


@pytest.fixture
def local(world: Demo, tmp_path: Path) -> list[str]:
    return local_args(world.loop, tmp_path / "state.json")


def arn(world: Demo, version: int) -> str:
    return f"arn:aws:sagemaker:{world.loop.stack.region}:{ACCOUNT}:model-package/closedloop-loans/{version}"


def verdicts(world: Demo, version: int) -> list[tuple[str, str]]:
    ledger = Ledger(world.loop.output("LedgerTableName"), world.loop.client("dynamodb"))
    return [(d.action, d.result) for d in ledger.decisions_for(arn(world, version)) if d.route == "model-approval"]


def live_version(local: list[str], capsys: pytest.CaptureFixture[str]) -> int | None:
    code, out, _ = run(["status", *local, "--json"], capsys)
    assert code == 0
    live = json.loads(out)["groups"][0]["live"]
    return live["version"] if live else None


def test_the_gate_leaves_the_version_to_an_approver(
    world: Demo, local: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # When the officer looks at the stack
    code, out, _ = run(["status", *local, "--json"], capsys)
    report = json.loads(out)
    # Then version 1 waits, with the policy's recommendation, and nothing is deployed
    assert code == 0 and report["approval_mode"] == "manual" and report["approvers"] == [OFFICER_ROLE]
    (group,) = report["groups"]
    assert [(p["version"], p["policy_says"]) for p in group["pending_approvals"]] == [(1, "approve")]
    assert group["live"] is None and group["endpoint_status"] is None
    assert group["last_retraining"]["trigger"] == "upload"


def test_an_approver_on_the_allow_list_releases_the_version(
    world: Demo, local: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the command line runs as the compliance officer (an assumed role, as on AWS)
    officer = assume(world.loop, OFFICER_ROLE, "jane@example.com", monkeypatch)
    assert officer == f"arn:aws:sts::{ACCOUNT}:assumed-role/ComplianceOfficer/jane@example.com"
    # When she approves version 1 with a reason
    code, out, _ = run(["approve", "1", "--reason", "bias and PII reports reviewed, CR-118", "--yes", *local], capsys)
    # Then she saw the evidence and the gate's recommendation, with no warning
    assert code == 0
    assert "  gate         pending by approval-policy/1 (manual mode, policy said approve) at " in out
    assert "  evaluation   auc " in out and "  PII report   clean" in out
    # the bias figures from Clarify's post-training report, and the top features by mean |SHAP|
    assert "  bias         group=B: DI " in out and "               from the Clarify post-training report" in out
    assert "  attributions top 5 of 10 features by mean |SHAP| (Clarify)" in out
    assert "               1. " in out and "               5. " in out
    assert "warning:" not in out
    assert f"approved closedloop-loans/1 (was PendingManualApproval) as {officer}" in out
    described = world.loop.client("sagemaker").describe_model_package(ModelPackageName=arn(world, 1))
    assert described["ModelApprovalStatus"] == "Approved"
    assert described["ApprovalDescription"].startswith(f"Approved by {officer} at ")
    assert described["ApprovalDescription"].endswith("via closedloop: bias and PII reports reviewed, CR-118")
    # And the rollout route, seeing the registry's event, verifies her and deploys exactly that version
    world.settle()
    assert verdicts(world, 1) == [("deploy", "deploying")]
    assert live_version(local, capsys) == 1
    # And the lineage names her as the one who decided
    code, out, _ = run(["lineage", "--model-version", "1", *local, "--format", "json"], capsys)
    approval = json.loads(out)["approval_decision"]
    assert approval["decided_by"] == f"approver {officer}"
    assert approval["rollout_verdict"]["result"] == "deploying"


def test_an_approval_by_someone_not_on_the_list_is_refused(
    world: Demo, local: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a newer pending version, and a data scientist's credentials
    version = register_copy(world.loop, 1)
    scientist = assume(world.loop, SCIENTIST_ROLE, "bob", monkeypatch)
    # When he approves it
    code, out, _ = run(["approve", str(version), "--reason", "my model is better", "--yes", *local], capsys)
    # Then the command line warned him, the registry records him
    assert code == 0
    assert f"warning: you ({scientist}) are not on the approver allow-list: the rollout will refuse" in out
    # And the rollout route refuses: version 1 keeps serving
    world.settle()
    assert verdicts(world, version) == [("verify_approver", "refused")]
    assert live_version(local, capsys) == 1


def test_the_officer_rejects_what_should_not_ship(
    world: Demo, local: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a pending version
    version = register_copy(world.loop, 1)
    officer = assume(world.loop, OFFICER_ROLE, "jane@example.com", monkeypatch)
    # When the officer rejects it
    code, out, _ = run(["reject", str(version), "--reason", "trained on a mislabelled batch", "--yes", *local], capsys)
    # Then it is rejected with her reason; the rollout records it and nothing changes
    assert code == 0 and f"rejected closedloop-loans/{version} (was PendingManualApproval) as {officer}" in out
    world.settle()
    assert verdicts(world, version) == [("rollback", "recorded")]
    assert live_version(local, capsys) == 1
    # And it can be neither approved nor rejected again
    for action in ("approve", "reject"):
        code, _, err = run([action, str(version), "--reason", "again", "--yes", *local], capsys)
        assert code == 2 and err.startswith(f"closedloop: closedloop-loans/{version} is Rejected")
