"""Feature attribution drift: SageMaker's nDCG of the live attribution ranking against the baseline's,
the parts of the explainability job the monitor builds, and the window's row sample."""

from __future__ import annotations

import csv
import io
import math

import pytest

from closedloop.drift.attributions import DEFAULT_THRESHOLD, global_shap_values, ndcg
from closedloop.drift.explain import build_analysis_config, build_attribution_job_request, job_name, window_digest
from closedloop.drift.sample import RowSample

BASELINE = {"income": 0.31, "debt_ratio": 0.12, "age": 0.05, "purpose": 0.02, "tenure": 0.01}


def test_the_same_ranking_is_one_whatever_the_scale() -> None:
    # Given live attributions ranked like the baseline's, only smaller
    live = {name: value / 3 for name, value in BASELINE.items()}
    # Then nDCG is exactly 1 (the ranking, not the size, is compared)
    assert ndcg(BASELINE, live) == pytest.approx(1.0)
    assert ndcg(BASELINE, dict(BASELINE)) == pytest.approx(1.0)


def test_a_reversed_ranking_is_low_and_below_sagemakers_threshold() -> None:
    # Given the live ranking is the baseline's upside down
    order = sorted(BASELINE, key=BASELINE.__getitem__, reverse=True)
    live = {name: float(rank + 1) for rank, name in enumerate(order)}
    value = ndcg(BASELINE, live)
    # Then nDCG is DCG/iDCG with the most important feature last
    idcg = sum(v / math.log2(i + 2) for i, v in enumerate(sorted(BASELINE.values(), reverse=True)))
    dcg = sum(v / math.log2(i + 2) for i, v in enumerate(sorted(BASELINE.values())))
    assert value == pytest.approx(dcg / idcg)
    assert value is not None and value < 0.6 < DEFAULT_THRESHOLD


def test_the_documented_college_admissions_example_gives_0_69() -> None:
    # Given SageMaker's example: SAT 0.70, GPA 0.50, class rank 0.05 in training; 0.10, 0.20, 0.70 live
    training = {"SAT score": 0.70, "GPA": 0.50, "Class rank": 0.05}
    live = {"SAT score": 0.10, "GPA": 0.20, "Class rank": 0.70}
    # Then nDCG is the documented 0.69: DCG = 0.05 + 0.5/log2(3) + 0.7/2, iDCG = 0.7 + 0.5/log2(3) + 0.05/2
    assert round(ndcg(training, live) or 0, 2) == 0.69


def test_a_swap_among_unimportant_features_costs_less_than_among_important_ones() -> None:
    # Given two live rankings that each swap one neighbouring pair
    tail_swap = {**BASELINE, "purpose": 0.005}  # purpose and tenure trade places
    head_swap = {**BASELINE, "income": 0.11}  # income and debt_ratio trade places
    tail, head = ndcg(BASELINE, tail_swap), ndcg(BASELINE, head_swap)
    # Then the swap of the features the baseline relies on most costs more
    assert tail is not None and head is not None
    assert head < tail < 1.0
    assert tail > DEFAULT_THRESHOLD


def test_missing_features_rank_last_and_an_empty_baseline_is_undefined() -> None:
    # A feature the live analysis lacks counts as attribution 0; signs are dropped (median aggregation)
    without_income = {k: v for k, v in BASELINE.items() if k != "income"}
    assert (ndcg(BASELINE, without_income) or 0) < ndcg(BASELINE, BASELINE) == pytest.approx(1.0)
    assert ndcg({"a": -0.4, "b": 0.1}, {"a": 0.4, "b": -0.1}) == pytest.approx(1.0)
    # A baseline that attributes nothing gives no figure rather than a division by zero
    assert ndcg({"a": 0.0, "b": 0.0}, {"a": 1.0, "b": 0.0}) is None
    # top-k ranks only the first positions
    assert ndcg(BASELINE, {**BASELINE, "tenure": 0.5}, top=1) == pytest.approx(BASELINE["tenure"] / BASELINE["income"])


def test_global_shap_values_are_read_from_clarifys_analysis_json() -> None:
    document = {
        "version": "1.0",
        "explanations": {
            "kernel_shap": {"label0": {"global_shap_values": {"a": 0.2, "b": None}, "expected_value": 0.4}}
        },
    }
    assert global_shap_values(document) == {"a": 0.2}
    with pytest.raises(ValueError, match="kernel_shap"):
        global_shap_values({"post_training_bias_metrics": {}})
    with pytest.raises(ValueError, match="no feature"):
        global_shap_values({"explanations": {"kernel_shap": {"label0": {"global_shap_values": {"a": "x"}}}}})


def test_the_job_is_clarifys_container_on_the_windows_config_and_dataset() -> None:
    digest = window_digest("closedloop-loans", "arn:pkg/1", {"AllTraffic": "k1"}, {"AllTraffic": "k9"})
    # the same window gives the same name; another window another one; never route 2's prefix
    name = job_name("closedloop", "loans", digest)
    assert name == job_name("closedloop", "loans", digest) and name.startswith("closedloop-attr-loans-")
    assert name != job_name("closedloop", "loans", window_digest("closedloop-loans", "arn:pkg/1", {}, {"A": "k"}))
    long_name = job_name("a-twenty-char-prefix", "l" * 30, digest)
    assert len(long_name) <= 63 and long_name.endswith(digest[:12])
    request = build_attribution_job_request(
        job_name=name,
        role_arn="arn:aws:iam::111122223333:role/x",
        image_uri="131013547314.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-clarify-processing:1.0",
        instance_type="ml.m5.large",
        max_runtime_s=3600,
        root_uri="s3://capture/attributions/closedloop-loans/" + name,
        model_package_arn="arn:pkg/1",
        line="loans",
    )
    assert "ContainerEntrypoint" not in request["AppSpecification"]
    inputs = {i["InputName"]: i["S3Input"] for i in request["ProcessingInputs"]}
    assert inputs["analysis_config"]["LocalPath"] == "/opt/ml/processing/input/config"
    assert inputs["dataset"]["S3Uri"].endswith("/dataset/")
    [output] = request["ProcessingOutputConfig"]["Outputs"]
    assert (output["OutputName"], output["S3Output"]["LocalPath"]) == ("analysis_result", "/opt/ml/processing/output")
    config = build_analysis_config(
        headers=["age", "income"], shap={"num_samples": 50}, model_name="m", instance_type="ml.m5.large"
    )
    assert config["methods"] == {"shap": {"num_samples": 50}} and "label" not in config
    assert config["predictor"]["model_name"] == "m"


def test_the_row_sample_is_bounded_reproducible_and_keeps_only_the_features() -> None:
    # Given 1,000 captured rows of 3 features and the protected attribute, offered file by file
    def sampled() -> RowSample:
        run = RowSample(50, "window")
        for file in range(4):
            rows = run.for_file(f"file-{file}")
            for i in range(250):
                rows.offer_request(f"{file},{i},x,group\n")
            run.merge(rows)
        return run

    run = sampled()
    # Then 50 rows are kept of the 1,000 seen, from every file, the same ones on a retry
    assert (len(run.rows), run.seen) == (50, 1000)
    assert {row.split(",")[0] for row in run.rows} == {"0", "1", "2", "3"}
    assert run.rows == sampled().rows
    text, written = run.to_csv(3)
    assert written == 50 and all(len(r) == 3 for r in csv.reader(io.StringIO(text)))
    # a row of another width is left out
    odd = RowSample(5, "w")
    odd.offer_request("1,2\n1,2,3\n")
    assert odd.to_csv(3)[1] == 1
