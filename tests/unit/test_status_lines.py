"""`closedloop status` as text: one block per model line, each with its endpoint, versions and drift alarms."""

from __future__ import annotations

from datetime import UTC, datetime

from closedloop_ops.status import GroupStatus, StackStatus, format_status


def line_status(line: str, **facts: object) -> GroupStatus:
    base = f"closedloop-{line}"
    return GroupStatus.model_validate(
        {
            "line": line,
            "model_group": base,
            "endpoint": base,
            "drift_alarms": {f"{base}-drift-{kind}": "OK" for kind in ("features", "predictions", "bias")},
            **facts,
        }
    )


def test_each_line_is_a_block_of_its_own() -> None:
    # Given a stack of two lines: loans retrained after its features drifted, churn (approved by a person,
    # its file says) not yet deployed
    loans = line_status(
        "loans",
        endpoint_status="InService",
        live={"version": 2, "endpoint_config": "closedloop-loans-v2-1", "since": "2026-12-02T17:47:23Z"},
        versions={"Approved": 2},
        drift_alarms={
            "closedloop-loans-drift-features": "ALARM",
            "closedloop-loans-drift-predictions": "OK",
            "closedloop-loans-drift-bias": None,
        },
    )
    churn = line_status("churn", versions={"PendingManualApproval": 1}, approval_mode="manual")
    status = StackStatus(
        stack="closedloop-demo",
        region="eu-west-1",
        local=True,
        approval_mode="auto",
        approvers=[],
        at=datetime(2026, 12, 2, tzinfo=UTC),
        groups=[loans, churn],
        dead_letter_queues=[],
    )
    # When it is formatted
    text = format_status(status)
    # Then each line has its heading and its own rows, in the stack's order
    first, second = text.split("\n\nmodel line ")[1:]
    assert first.startswith("loans: model group closedloop-loans (2 approved)\n")
    assert "  live            version 2 on closedloop-loans (InService, config closedloop-loans-v2-1)" in first
    assert "  drift alarms    features ALARM, predictions OK, bias MISSING (closedloop-loans-drift-*)" in first
    assert second.startswith(
        "churn: model group closedloop-churn (1 pending)\n  approval mode   manual (the line's own)\n"
    )
    assert "approval mode" not in first  # the stack's mode, said once at the top
    assert "  live            nothing: closedloop-churn does not exist yet (no version deployed)" in second
    assert "  drift alarms    features OK, predictions OK, bias OK (closedloop-churn-drift-*)" in second
    assert "closedloop-loans" not in second.split("dead-letter queues")[0]


def test_what_a_removed_line_left_behind_is_listed_with_the_command_that_removes_it() -> None:
    # Given a stack serving loans, whose removed line claims still has its endpoint, two configurations and models
    status = StackStatus(
        stack="closedloop-dev",
        region="eu-west-1",
        local=False,
        approval_mode="auto",
        approvers=[],
        at=datetime(2026, 12, 2, tzinfo=UTC),
        groups=[line_status("loans")],
        dead_letter_queues=[],
        left_behind=[
            {
                "line": "claims",
                "endpoint": "closedloop-claims",
                "endpoint_configs": ["closedloop-claims-v1-aa", "closedloop-claims-v2-bb"],
                "models": ["closedloop-claims-v1-cc", "closedloop-claims-v2-dd"],
            }
        ],
    )
    # When it is formatted, then the leftovers are counted and the way to remove them named
    assert (
        "removed model line claims left behind: endpoint closedloop-claims, 2 endpoint configuration(s), "
        "2 model(s) (`closedloop line retire claims` removes them)"
    ) in format_status(status)
