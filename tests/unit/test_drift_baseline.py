"""baseline.json and bias.json: the contract's formats, and the pipeline's Baseline step that writes them."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from closedloop.drift.baseline import Baseline, BiasReport
from closedloop.drift.capture import read_capture
from closedloop.drift.sketch import DriftPlan
from closedloop_ops import synthetic
from support.capture import FEATURES, baseline_document, bias_report, capture_file

CONTRACT_BASELINE: dict[str, Any] = {
    "schema": "closedloop.baseline/1",
    "rows": 4000,
    "label": "approved",
    "protected_attribute": "group",
    "favourable_label": "1",
    "feature_order": ["age", "purpose"],
    "features": {
        "age": {
            "type": "numeric",
            "quantile_edges": [21, 26, 32, 37, 43, 48, 53, 59, 64, 70, 75],
            "bin_proportions": [0.1] * 10,
            "sample": [21, 30, 45, 60, 75],
            "mean": 48.0,
            "std": 15.5,
            "missing_rate": 0,
        },
        "purpose": {"type": "categorical", "frequencies": {"car": 0.17, "education": 0.83}, "missing_rate": 0},
    },
    "prediction": {
        "positive_rate": 0.44,
        "score_quantile_edges": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
        "score_bin_proportions": [0.1] * 10,
        "score_sample": [0.05, 0.5, 0.95],
    },
    "bias": {
        "protected_attribute": "group",
        "advantaged_group": "A",
        "disadvantaged_group": "B",
        "positive_rates": {"A": 0.47, "B": 0.40},
        "dppl": 0.07,
    },
}

CONTRACT_BIAS = {
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
                        {
                            "name": "DPPL",
                            "description": "Difference in Positive Proportions in Predicted Labels (DPPL)",
                            "value": 0.04,
                        },
                    ],
                }
            ]
        },
    },
}


def test_the_contract_examples_parse() -> None:
    baseline = Baseline.model_validate(CONTRACT_BASELINE)
    assert baseline.feature_order == ["age", "purpose"]
    assert baseline.bias is not None and baseline.bias.dppl == 0.07
    assert BiasReport.model_validate(CONTRACT_BIAS).dppl("group", "B") == ("B", 0.04)
    # with one facet value listed, it is the one
    assert BiasReport.model_validate(CONTRACT_BIAS).dppl("group") == ("B", 0.04)
    assert BiasReport.model_validate(CONTRACT_BIAS).dppl("age") is None


def test_the_evaluation_dppl_is_the_bias_reference() -> None:
    plan = DriftPlan(Baseline.model_validate(CONTRACT_BASELINE), BiasReport.model_validate(CONTRACT_BIAS))
    assert (plan.bias_attribute, plan.disadvantaged, plan.reference_dppl, plan.reference_source) == (
        "group",
        "B",
        0.04,
        "evaluation",
    )
    # without the report, the baseline's own figure is used
    fallback = DriftPlan(Baseline.model_validate(CONTRACT_BASELINE))
    assert (fallback.reference_dppl, fallback.reference_source) == (0.07, "baseline")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update({"schema": "closedloop.baseline/2"}),
        lambda d: d["features"]["age"].update({"quantile_edges": [3, 2, 1]}),
        lambda d: d["features"]["age"].update({"bin_proportions": [0.5, 0.5]}),
        lambda d: d["features"]["age"].update({"bin_proportions": [0.0] * 10}),
        lambda d: d["features"]["age"].update({"type": "ordinal"}),
        lambda d: d["features"].pop("purpose"),
        lambda d: d.update({"feature_order": ["age", "age"]}),
        lambda d: d["prediction"].update({"score_quantile_edges": [0.0, float("nan"), 1.0]}),
    ],
    ids=["schema", "decreasing", "too-few-shares", "all-zero", "type", "undescribed", "twice", "nan"],
)
def test_broken_baselines_are_rejected(mutate: Any) -> None:
    document = copy.deepcopy(CONTRACT_BASELINE)
    mutate(document)
    with pytest.raises(ValidationError):
        Baseline.model_validate(document)


def test_baselines_the_pipeline_step_writes_follow_the_contract() -> None:
    # Given the baseline the pipeline's Baseline step writes for 4,000 synthetic rows and their scores
    document = baseline_document(n=4000)
    baseline = Baseline.model_validate(document)
    # Then every feature is described, numeric ones with 11 edges, deciles and a sorted sample
    assert baseline.feature_order == FEATURES
    assert {name: spec.type for name, spec in baseline.features.items()} == {
        **{name: "numeric" for name in FEATURES if name not in {"purpose", "home_ownership"}},
        "purpose": "categorical",
        "home_ownership": "categorical",
    }
    income = document["features"]["income"]
    assert len(income["quantile_edges"]) == 11
    assert income["bin_proportions"] == pytest.approx([0.1] * 10, abs=0.001)
    assert len(income["sample"]) == 1000
    assert income["sample"] == sorted(income["sample"])
    assert sum(document["features"]["purpose"]["frequencies"].values()) == pytest.approx(1.0)
    # And the prediction and bias sections are consistent with each other
    assert baseline.prediction is not None and len(baseline.prediction.score_sample) == 1000
    bias = document["bias"]
    assert (bias["advantaged_group"], bias["disadvantaged_group"]) == ("A", "B")
    assert bias["dppl"] == pytest.approx(bias["positive_rates"]["A"] - bias["positive_rates"]["B"], abs=1e-5)
    assert bias_report(0.03)["post_training_bias_metrics"]["facets"]["group"][0]["value_or_threshold"] == "B"


def test_the_monitor_measures_no_drift_between_a_baseline_and_its_own_rows() -> None:
    # Given the pipeline step's baseline of 4,000 rows, read and accepted by the monitor's reader
    rows = list(synthetic.rows(4000, seed=1))
    plan = DriftPlan(Baseline.model_validate(baseline_document(n=4000, seed=1)))
    # When the very same rows and scores are captured and measured against it
    sketch = plan.new_sketch()
    capture = capture_file(rows, start=datetime(2026, 11, 27, tzinfo=UTC), rows_per_request=5)
    for request in read_capture([capture]):
        assert sketch.add_request(request.inputs, request.outputs)
    report = plan.report(sketch)
    # Then both sides bin every value alike: PSI 0 for every feature
    assert (report.records, report.invalid_rows) == (4000, 0)
    assert {f.feature: f.psi for f in report.features} == pytest.approx(dict.fromkeys(FEATURES, 0.0), abs=1e-9)
    # And next to 0 for the scores: the endpoint answers with 6 decimals and the step publishes its
    # edges rounded to 6 decimals, so a score within 5e-7 of an edge may land in the next bin (one
    # score of 4,000 moved gives 1.25e-6; a binning rule off by one bin would give far more)
    assert report.prediction_psi is not None and 0.0 <= report.prediction_psi < 1e-5
    # And the positive rate and the DPPL are the baseline's own
    assert plan.baseline.prediction is not None
    assert report.positive_rate == pytest.approx(plan.baseline.prediction.positive_rate, abs=1e-6)
    assert report.bias is not None and report.bias.raw_change == pytest.approx(0.0, abs=1e-5)
    assert report.bias.drift == 0.0
