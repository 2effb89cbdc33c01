"""Reasons and labels are shortened at word boundaries, never inside a number."""

from __future__ import annotations

from closedloop_ops.lineage import to_dot
from closedloop_ops.text import shorten

REASON = "closedloop-drift-features closedloop/Drift MaxFeaturePSI = 7.54101 threshold 0.2"


def test_a_reason_is_cut_between_words_with_an_ellipsis() -> None:
    # Given reasons longer than the room on a console line
    # When they are shortened
    # Then the cut falls between words, marked with an ellipsis, within the width
    assert shorten("pii-not-clean: the file holds undeclared PII columns", 20) == "pii-not-clean: the…"
    assert shorten("the value must be a key of the dataset policy", 16) == "the value must…"
    assert shorten(REASON, 60) == "closedloop-drift-features closedloop/Drift MaxFeaturePSI…"
    assert all(len(shorten(REASON, width)) <= width for width in range(2, 90))
    assert shorten("short enough", 90) == "short enough"


def test_a_number_is_never_cut() -> None:
    # Given a line whose cut would fall inside a number
    # When it is shortened at every width
    for width in range(2, len(REASON)):
        cut = shorten(REASON, width).removesuffix("…")
        # Then a number in it is whole, or not there at all
        assert "7.54101" in cut or ("7." not in cut and not cut.endswith(("= 7", "=7")))
        assert not cut.endswith(("0.", " 0"))
    assert shorten("psi=12345678901234", 12) == "psi…"


def test_dot_labels_keep_the_whole_trigger_reason() -> None:
    # Given a chain whose model was retrained because of a drift alarm
    chain = {
        "model_version": {"group": "closedloop-models", "version": 2, "status": "Approved"},
        "approval_decision": {"status": "Approved", "decided_by": "policy approval-policy/1 (auto mode)"},
        "pipeline_execution": {"arn": "arn:…/execution/ex1", "trigger": "alarm", "trigger_reason": REASON},
        "prepared_data": {"prep_run_id": "abc", "rows": 3000},
        "code_version": {"model": "train=3a14"},
    }
    # When it is written as a Graphviz graph
    dot = to_dot(chain)
    # Then the trigger's figure and threshold are whole, not "MaxFeaturePSI = 7"
    assert f"trigger alarm: {REASON}" in dot
