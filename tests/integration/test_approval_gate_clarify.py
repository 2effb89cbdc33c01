"""Route 3 on moto with Clarify's reports: the gate judges the Clarify post-training report a version
registers (bias.json only for versions registered before), and carries the SHAP attributions."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from closedloop.approval.evidence import EvidenceReader
from closedloop_ops.moto_ext.pipelines import record_execution_step
from support.handlers import invoke, load_handler
from support.stack import ACCOUNT, REGION, Stack
from support.training import (
    bias_report,
    clarify_explainability_report,
    clarify_post_training_report,
    clarify_pre_training_report,
    create_pipeline,
    pipeline_event,
    prepared_run,
    register_version,
    start_execution,
)
from support.worlds import ledger

GROUP = "closedloop-loans"


@pytest.fixture
def gate(stack: Stack) -> Any:
    create_pipeline()
    return load_handler("approval_gate")


def executed(stack: Stack, **register: Any) -> tuple[str, str]:
    execution = start_execution()
    arn = register_version(stack, execution, prepared=prepared_run(stack), **register)
    record_execution_step(ACCOUNT, REGION, execution, name="Register", metadata={"RegisterModel": {"Arn": arn}})
    return execution, arn


def clarify_reports(**post: Any) -> dict[str, dict[str, Any]]:
    return {
        "data-bias": clarify_pre_training_report(),
        "model-bias": clarify_post_training_report(**post),
        "explainability": clarify_explainability_report(),
    }


def reader(stack: Stack) -> EvidenceReader:
    return EvidenceReader(
        s3=boto3.client("s3", region_name=REGION),
        sagemaker=boto3.client("sagemaker", region_name=REGION),
        ledger=ledger(stack),
        model_group=GROUP,
        endpoint_name="closedloop-loans",
    )


def test_a_version_with_clarify_reports_is_judged_on_clarify_s_post_training_figures(stack: Stack, gate: Any) -> None:
    # Given a version whose Clarify report passes, next to a bias.json that would fail
    execution, arn = executed(stack, clarify=clarify_reports(di=0.97, dppl=0.02), bias=bias_report(di=0.5, dppl=0.3))
    # When its execution succeeds
    outcome = invoke(gate, pipeline_event(execution))
    # Then the gate approves on Clarify's DI and DPPL, and says so with the numbers it used
    assert outcome["result"] == "approved", outcome
    description = boto3.client("sagemaker", region_name=REGION).describe_model_package(ModelPackageName=arn)[
        "ApprovalDescription"
    ]
    assert "di[group=B]=0.97" in description and "dppl[group=B]=0.02" in description


def test_a_failing_clarify_report_rejects_even_when_bias_json_passes(stack: Stack, gate: Any) -> None:
    # Given a version whose Clarify post-training report breaks both bias thresholds
    execution, _ = executed(stack, clarify=clarify_reports(di=0.55, dppl=0.31), bias=bias_report())
    # When the gate runs
    outcome = invoke(gate, pipeline_event(execution))
    # Then it rejects on both, read from Clarify's report
    assert outcome["result"] == "rejected"
    assert {"disparate-impact-out-of-range", "dppl-above-maximum"} <= set(outcome["reasons"])


def test_a_clarify_report_without_di_is_a_rejection(stack: Stack, gate: Any) -> None:
    # Clarify writes null (with an "error") for a metric it could not compute: missing evidence, never a pass
    execution, _ = executed(stack, clarify=clarify_reports(di=None))
    outcome = invoke(gate, pipeline_event(execution))
    assert outcome["result"] == "rejected" and "bias-metric-missing" in outcome["reasons"]


def test_the_evidence_names_its_bias_source_and_the_top_attributions(stack: Stack, gate: Any) -> None:
    # Given a version with Clarify's reports and one registered before the pipeline ran Clarify
    _, with_clarify = executed(stack, clarify=clarify_reports())
    _, before = executed(stack)
    evidence_reader = reader(stack)
    # When the evidence of each is read
    clarify_evidence = evidence_reader.evidence(evidence_reader.describe(with_clarify))
    old_evidence = evidence_reader.evidence(evidence_reader.describe(before))
    # Then the first is Clarify's, with its features by mean |SHAP|, largest first
    assert clarify_evidence.bias_source == "clarify"
    assert [(a.feature, a.mean_abs_shap) for a in clarify_evidence.attributions or ()] == [
        ("loan_amount", 0.084),
        ("late_payments", 0.047),
        ("income", 0.021),
        ("age", 0.003),
    ]
    assert clarify_evidence.bias and clarify_evidence.bias[0].di == 0.97
    # and the older one falls back to bias.json, with no attributions and the reason why
    assert old_evidence.bias_source == "evaluate"
    assert old_evidence.bias and old_evidence.bias[0].di == 0.94
    assert old_evidence.attributions is None
    assert old_evidence.attributions_problem == "the package names no explainability report"


def test_an_unreadable_explainability_report_is_a_problem_not_a_rejection(stack: Stack, gate: Any) -> None:
    # Given a version whose explainability report has no kernel_shap section
    reports = {**clarify_reports(), "explainability": {"version": "1.0", "explanations": {}}}
    execution, arn = executed(stack, clarify=reports)
    # When the gate runs, Then attributions are evidence for the approver, not a rule: it approves
    assert invoke(gate, pipeline_event(execution))["result"] == "approved"
    evidence_reader = reader(stack)
    found = evidence_reader.evidence(evidence_reader.describe(arn))
    assert found.attributions is None
    assert found.attributions_problem == "the explainability report is malformed: no explanations.kernel_shap"
