"""`closedloop demo --approval-mode manual`: the story stops where a person takes over, successfully (both lines)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.cli import OFFICER_ROLE, fresh_moto, run

pytestmark = pytest.mark.slow


def test_the_manual_demo_ends_with_version_1_pending_and_says_how_to_approve_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an empty emulator
    fresh_moto()
    # When the demo runs in manual approval mode with the default allow-list
    code, out, _ = run(["demo", "--approval-mode", "manual", "--out", str(tmp_path)], capsys)
    # Then it ends successfully where the approver takes over: version 1 of each line pending, nothing deployed
    assert code == 0
    assert "approval: loans version 1 waits for an approver (manual mode) → pending" in out
    assert "approval: churn version 1 waits for an approver (manual mode) → pending" in out
    assert f"versions loans/1, churn/1 are pending (manual approval mode; approvers: {OFFICER_ROLE})" in out
    # And it says how to approve one, on the command line or in the console
    assert f'closedloop approve loans/1 --local --assume-role {OFFICER_ROLE} --reason "evidence reviewed"' in out
    assert f"closedloop ui --local --assume-role {OFFICER_ROLE}" in out
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert report["pending_versions"] == ["loans/1", "churn/1"]
    assert report["model_versions_deployed"] == [] and report["events_in_dlq"] == 0
    assert {line: facts["model_versions_deployed"] for line, facts in report["model_lines"].items()} == {
        "loans": [],
        "churn": [],
    }


def test_approvers_need_manual_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # When an allow-list is given for the auto mode
    code, _, err = run(["demo", "--approvers", OFFICER_ROLE, "--out", str(tmp_path)], capsys)
    # Then the command refuses before starting anything
    assert code == 2
    assert (
        err
        == "closedloop: --approvers needs --approval-mode manual (in auto mode the approval policy releases versions)\n"
    )
