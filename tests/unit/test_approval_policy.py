"""The approval policy, table-driven: one row per reason to reject, and the evidence that passes."""

from __future__ import annotations

from typing import Any

import pytest

from closedloop.approval.evidence import group_and_version, parse_bias, parse_evaluation
from closedloop.approval.policy import (
    MAX_DESCRIPTION,
    POLICY_VERSION,
    ApprovalPolicy,
    BiasFacet,
    Champion,
    Evidence,
    Quality,
    describe,
)
from closedloop.prep import prepare
from closedloop.settings import Settings
from support.stack import stack_env

POLICY = ApprovalPolicy(
    min_auc=0.75,
    min_f1=0.6,
    min_accuracy=0.7,
    champion_tolerance=0.01,
    min_disparate_impact=0.8,
    max_abs_dppl=0.1,
)
ARN = "arn:aws:sagemaker:eu-west-1:111122223333:model-package/closedloop-loans/4"


def good(**changes: Any) -> Evidence:
    """Evidence every rule passes; `changes` replace parts of it."""
    fields: dict[str, Any] = {
        "model_package_arn": ARN,
        "version": 4,
        "quality": Quality(auc=0.8, f1=0.8, accuracy=0.75, precision=0.7, recall=0.9, majority_class_accuracy=0.66),
        "bias": (BiasFacet(attribute="group", value="B", di=0.94, dppl=0.05),),
        "pii_clean": True,
        "pii_undeclared_files": 0,
        "champion": Champion(model_package_arn=ARN.replace("/4", "/3"), version=3, source="live", auc=0.805),
    }
    fields.update(changes)
    return Evidence(**fields)


def quality(**changes: Any) -> Quality:
    base = {"auc": 0.8, "f1": 0.8, "accuracy": 0.75, "majority_class_accuracy": 0.66}
    return Quality(**{**base, **changes})


def facet(**changes: Any) -> tuple[BiasFacet, ...]:
    return (BiasFacet(**{"attribute": "group", "value": "B", "di": 0.94, "dppl": 0.05, **changes}),)


def champion(**changes: Any) -> Champion:
    base = {"model_package_arn": ARN.replace("/4", "/3"), "version": 3, "source": "live", "auc": 0.805}
    return Champion(**{**base, **changes})


def test_evidence_that_passes_every_rule_is_approved() -> None:
    decision = POLICY.evaluate(good())
    assert decision.approve
    assert decision.rejections == ()
    assert decision.policy_version == POLICY_VERSION
    # every number it used is in the decision
    assert decision.numbers["auc"] == 0.8
    assert decision.numbers["champion_auc"] == 0.805
    assert decision.numbers["di[group=B]"] == 0.94
    assert decision.numbers["min_auc"] == 0.75


def test_without_a_champion_the_first_version_can_be_approved() -> None:
    decision = POLICY.evaluate(good(champion=None))
    assert decision.approve
    assert decision.numbers["champion"] == "none"


@pytest.mark.parametrize(
    ("evidence", "code"),
    [
        (good(quality=None, quality_problem="the evaluation report does not exist"), "evaluation-missing"),
        (good(quality=quality(auc=None)), "metric-missing"),
        (good(quality=quality(f1=None)), "metric-missing"),
        (good(quality=quality(majority_class_accuracy=None)), "metric-missing"),
        (good(quality=quality(auc=0.7499)), "auc-below-minimum"),
        (good(quality=quality(f1=0.59)), "f1-below-minimum"),
        (good(quality=quality(accuracy=0.69, majority_class_accuracy=0.5)), "accuracy-below-minimum"),
        (good(quality=quality(accuracy=0.72, majority_class_accuracy=0.72)), "not-better-than-majority"),
        (good(champion=champion(auc=None, problem="the report does not exist")), "champion-evidence-missing"),
        (good(champion=champion(auc=0.82)), "worse-than-champion"),
        (good(version=2, champion=champion(version=3)), "older-than-champion"),
        (good(bias=None, bias_problem="the bias report is malformed"), "bias-missing"),
        (good(bias=()), "bias-missing"),
        (good(bias=facet(di=None)), "bias-metric-missing"),
        (good(bias=facet(di=0.79)), "disparate-impact-out-of-range"),
        (good(bias=facet(di=1.26)), "disparate-impact-out-of-range"),
        (good(bias=facet(dppl=0.11)), "dppl-above-maximum"),
        (good(bias=facet(dppl=-0.11)), "dppl-above-maximum"),
        (good(pii_clean=None, pii_problem="no PII report"), "pii-report-missing"),
        (good(pii_clean=False, pii_undeclared_files=2), "pii-not-clean"),
        (good(pii_clean=True, pii_undeclared_files=1), "pii-not-clean"),
    ],
)
def test_each_reason_to_reject(evidence: Evidence, code: str) -> None:
    decision = POLICY.evaluate(evidence)
    assert not decision.approve
    assert code in decision.codes


def test_clean_means_what_the_pii_report_means() -> None:
    # Given a run whose quarantined file held undeclared PII, and evidence read from a report that
    # (written before the one definition) still says clean next to that file
    files = [{"status": "prepared", "undeclared": {}}, {"status": "quarantined", "undeclared": {"notes": {"email": 1}}}]
    evidence = good(pii_clean=True, pii_undeclared_files=1)
    # When the report's verdict is made and the policy decides
    verdict = prepare.pii_verdict(files)
    decision = POLICY.evaluate(evidence)
    # Then the report, the evidence, the decision and its printed numbers all say: not clean
    assert verdict == {"undeclared_pii_files": 1, "clean": False}
    assert evidence.pii_clean is False
    assert decision.codes == ["pii-not-clean"] and decision.numbers["pii_clean"] is False
    assert "pii_clean=False pii_undeclared_files=1" in describe(decision, mode="auto")
    # And a run without undeclared PII is clean everywhere
    assert prepare.pii_verdict(files[:1]) == {"undeclared_pii_files": 0, "clean": True}
    assert POLICY.evaluate(good()).numbers["pii_clean"] is True


def test_within_the_champion_tolerance_is_not_worse() -> None:
    # 0.8 vs 0.809: 0.009 worse, tolerance 0.01
    assert POLICY.evaluate(good(champion=champion(auc=0.809))).approve


def test_the_four_fifths_rule_is_symmetric_and_inclusive() -> None:
    assert POLICY.evaluate(good(bias=facet(di=0.8))).approve
    assert POLICY.evaluate(good(bias=facet(di=1.25))).approve


def test_every_failing_rule_is_listed_not_just_the_first() -> None:
    evidence = good(quality=quality(auc=0.6, f1=0.5), bias=facet(dppl=0.3), pii_clean=False, pii_undeclared_files=1)
    codes = POLICY.evaluate(evidence).codes
    assert {
        "auc-below-minimum",
        "f1-below-minimum",
        "dppl-above-maximum",
        "pii-not-clean",
        "worse-than-champion",
    } <= set(codes)


def test_the_policy_comes_from_the_settings() -> None:
    settings = Settings.from_environ({**stack_env(), "MIN_AUC": "0.81", "MAX_ABS_DPPL": "0.05"})
    policy = ApprovalPolicy.from_settings(settings)
    assert (policy.min_auc, policy.max_abs_dppl, policy.version) == (0.81, 0.05, POLICY_VERSION)


def test_the_description_leads_with_the_verdict_and_policy_and_fits_the_registry() -> None:
    decision = POLICY.evaluate(good(quality=quality(auc=0.6)))
    text = describe(decision, mode="auto", decision_id="abc123")
    assert text.startswith(f"closedloop {POLICY_VERSION} (auto): REJECTED")
    assert "auc-below-minimum" in text
    assert "auc=0.6" in text
    assert text.endswith("[decision abc123]")
    # a decision with many facets is cut to the registry's limit, keeping the decision id
    many = good(bias=tuple(BiasFacet(attribute="group", value=f"G{i}", di=0.5, dppl=0.3) for i in range(40)))
    long_text = describe(POLICY.evaluate(many), mode="auto", decision_id="abc123")
    assert len(long_text) <= MAX_DESCRIPTION
    assert long_text.endswith("[decision abc123]")


def test_in_manual_mode_the_description_is_a_recommendation() -> None:
    text = describe(POLICY.evaluate(good()), mode="manual")
    assert "awaiting an approver; the policy recommends APPROVAL" in text
    assert "APPROVED" not in text


# -- reading the reports --------------------------------------------------------------------------


def evaluation(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "schema": "closedloop.evaluation/1",
        "rows_evaluated": 1032,
        "label": "approved",
        "binary_classification_metrics": {
            "auc": {"value": 0.7396},
            "f1": {"value": 0.7986},
            "accuracy": {"value": 0.7112},
            "precision": {"value": 0.74},
            "recall": {"value": 0.87},
        },
        "majority_class_accuracy": 0.6609,
        "feature_importance": {"loan_amount": 0.43},
    }
    document.update(changes)
    return document


def test_the_evaluation_report_parses() -> None:
    parsed = parse_evaluation(evaluation())
    assert (parsed.auc, parsed.f1, parsed.accuracy, parsed.majority_class_accuracy) == (0.7396, 0.7986, 0.7112, 0.6609)
    assert parsed.rows_evaluated == 1032


@pytest.mark.parametrize(
    "document",
    [
        evaluation(binary_classification_metrics={"auc": {"value": "high"}}),
        evaluation(binary_classification_metrics={"auc": {"value": True}}),
        evaluation(binary_classification_metrics={"auc": {"value": float("nan")}}),
        evaluation(binary_classification_metrics={}),
    ],
)
def test_a_metric_that_is_not_a_number_is_missing(document: dict[str, Any]) -> None:
    assert parse_evaluation(document).auc is None


@pytest.mark.parametrize("document", [evaluation(schema="other/1"), evaluation(binary_classification_metrics=[])])
def test_another_document_is_refused(document: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"not a|no binary"):
        parse_evaluation(document)


def test_the_bias_report_parses_in_clarify_format() -> None:
    document = {
        "version": "1.0",
        "post_training_bias_metrics": {
            "label": "approved",
            "label_value_or_threshold": "1",
            "facets": {
                "group": [
                    {
                        "value_or_threshold": "B",
                        "metrics": [
                            {"name": "DI", "description": "Disparate Impact (DI)", "value": 0.91},
                            {"name": "DPPL", "description": "Difference in Positive …", "value": 0.04},
                        ],
                    },
                    {"value_or_threshold": "C", "metrics": [{"name": "DI", "value": None}]},
                ]
            },
        },
    }
    facets = parse_bias(document)
    assert facets[0] == BiasFacet(attribute="group", value="B", di=0.91, dppl=0.04)
    assert (facets[1].di, facets[1].dppl) == (None, None)


@pytest.mark.parametrize(
    "document",
    [{}, {"post_training_bias_metrics": {"facets": {}}}, {"post_training_bias_metrics": {"facets": {"group": []}}}],
)
def test_a_bias_report_without_facets_is_refused(document: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="facet"):
        parse_bias(document)


@pytest.mark.parametrize(
    ("arn", "expected"),
    [
        (ARN, ("closedloop-loans", 4)),
        ("arn:aws:sagemaker:eu-west-1:111122223333:model-package/other-models/12", ("other-models", 12)),
        ("arn:aws:sagemaker:eu-west-1:111122223333:model-package/unversioned", None),
        ("arn:aws:sagemaker:eu-west-1:111122223333:model/closedloop-loans/4", None),
    ],
)
def test_group_and_version_of_a_package_arn(arn: str, expected: tuple[str, int] | None) -> None:
    assert group_and_version(arn) == expected
