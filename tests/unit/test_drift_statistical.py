"""The drift report's numbers are the textbook PSI and two-sample KS of the samples behind them.

Every expectation is computed here, independently of `closedloop.drift`, from the very samples the
monitor saw: decile edges with numpy's linear-interpolation quantiles, bins closed on the left
(`numpy.searchsorted(..., side="right")`), PSI = sum (a - e) ln(a / e) over shares floored at 1e-4,
and the KS statistic from `scipy.stats.ks_2samp` against the baseline's reference sample. The
samples come from known distributions, so the same numbers are also checked against closed forms:
a normal shifted by delta standard deviations has the decile-binned PSI
sum_i (a_i - 0.1) ln(a_i / 0.1), a_i = Phi(z_(i+1) - delta) - Phi(z_i - delta), and the KS statistic
2 Phi(|delta| / 2) - 1. Income is lognormal with sigma 0.45 on the log scale, so multiplying it by
f shifts log(income) by delta = ln(f) / 0.45.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
from scipy.stats import ks_2samp

from closedloop.drift.baseline import Baseline
from closedloop.drift.capture import read_capture
from closedloop.drift.sketch import DriftPlan, DriftReport
from closedloop_ops.local.template import read_yaml
from closedloop_ops.synthetic import NO_DRIFT, STRONG_DRIFT, Drift, rows
from support.capture import CATEGORICAL, FEATURES, baseline_document, capture_file, pipeline_baseline, score

INCOME_SIGMA = 0.45
FLOOR = 1e-4  # the documented share of an empty bucket (closedloop.drift.stats)
PARAMETERS = read_yaml(Path(__file__).resolve().parents[2] / "template.yaml")["Parameters"]
PSI_THRESHOLD = float(PARAMETERS["DriftPsiThreshold"]["Default"])
KS_THRESHOLD = float(PARAMETERS["DriftKsThreshold"]["Default"])
BIAS_THRESHOLD = float(PARAMETERS["BiasDriftThreshold"]["Default"])
MIN_RECORDS = int(PARAMETERS["DriftMinRecords"]["Default"])
BASELINE_ROWS, BASELINE_SEED = 4000, 1


# -- the reference: PSI and KS from first principles ------------------------------------------------


def reference_psi(expected_counts: Sequence[float], actual_counts: Sequence[float]) -> float:
    e = np.asarray(expected_counts, dtype=float)
    a = np.asarray(actual_counts, dtype=float)
    e = np.maximum(e / e.sum(), FLOOR)
    a = np.maximum(a / a.sum(), FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def decile_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin i holds edges[i] <= x < edges[i+1]; below the first edge: bin 0; at or above the last: bin 9."""
    return np.bincount(np.searchsorted(edges[1:-1], values, side="right"), minlength=len(edges) - 1)


def reference_numeric_psi(baseline: np.ndarray, traffic: np.ndarray) -> float:
    edges = np.quantile(baseline, np.linspace(0.0, 1.0, 11))
    return reference_psi(decile_counts(baseline, edges), decile_counts(traffic, edges))


def reference_categorical_psi(baseline: Sequence[str], traffic: Sequence[str]) -> float:
    categories = sorted(set(baseline) | set(traffic))
    return reference_psi([baseline.count(c) for c in categories], [list(traffic).count(c) for c in categories])


def reference_ks(reference_sample: Sequence[float], traffic: np.ndarray) -> float:
    return float(ks_2samp(np.asarray(reference_sample), traffic, method="asymp").statistic)


def binned_psi_of_shift(delta: float) -> float:
    normal = NormalDist()
    z = [-math.inf, *(normal.inv_cdf(i / 10) for i in range(1, 10)), math.inf]
    shares = [normal.cdf(z[i + 1] - delta) - normal.cdf(z[i] - delta) for i in range(10)]
    return sum((a - 0.1) * math.log(a / 0.1) for a in shares)


def ks_of_shift(delta: float) -> float:
    return 2 * NormalDist().cdf(abs(delta) / 2) - 1


# -- the monitor, as the drift function runs it ----------------------------------------------------


@pytest.fixture(scope="module")
def baseline_rows() -> list[dict[str, str]]:
    return list(rows(BASELINE_ROWS, seed=BASELINE_SEED))


@pytest.fixture(scope="module")
def plan() -> DriftPlan:
    return DriftPlan(Baseline.model_validate(baseline_document(n=BASELINE_ROWS, seed=BASELINE_SEED)))


def measure(plan: DriftPlan, traffic: list[dict[str, str]]) -> DriftReport:
    """Traffic through the real capture format and reader."""
    data = capture_file(traffic, start=datetime(2026, 11, 27, tzinfo=UTC), rows_per_request=5)
    sketch = plan.new_sketch()
    for request in read_capture([data]):
        sketch.add_request(request.inputs, request.outputs)
    return plan.report(sketch)


def feature(report: DriftReport, name: str) -> tuple[float, float | None]:
    found = next(f for f in report.features if f.feature == name)
    return found.psi, found.ks


def column(table: list[dict[str, str]], name: str) -> np.ndarray:
    return np.array([float(r[name]) for r in table])


@pytest.mark.parametrize(
    ("drift", "n", "seed"),
    [(NO_DRIFT, 2000, 3), (STRONG_DRIFT, 2000, 5), (Drift(income_factor=0.8), 3000, 6)],
    ids=["no-drift", "strong-drift", "income-x0.8"],
)
def test_every_figure_of_the_report_is_the_textbook_psi_and_ks_of_its_samples(
    plan: DriftPlan, baseline_rows: list[dict[str, str]], drift: Drift, n: int, seed: int
) -> None:
    # Given traffic of known drift, captured in SageMaker's format
    traffic = list(rows(n, seed=seed, drift=drift))
    # When the monitor measures it against the baseline of the training rows
    report = measure(plan, traffic)
    assert report.records == n
    # Then each numeric feature's PSI is the decile PSI of the two samples, and its KS the
    # two-sample KS against the baseline's reference sample (order statistics of the training values)
    for name in FEATURES:
        psi, ks = feature(report, name)
        if name in CATEGORICAL:
            expected = reference_categorical_psi([r[name] for r in baseline_rows], [r[name] for r in traffic])
            assert psi == pytest.approx(expected, rel=1e-9, abs=1e-12), name
            assert ks is None
            continue
        trained, seen = column(baseline_rows, name), column(traffic, name)
        reference_sample = plan.baseline.features[name].sample  # type: ignore[union-attr]
        assert set(reference_sample) <= set(trained.tolist()) and list(reference_sample) == sorted(reference_sample)
        assert psi == pytest.approx(reference_numeric_psi(trained, seen), rel=1e-9, abs=1e-12), name
        assert ks == pytest.approx(reference_ks(reference_sample, seen), rel=1e-9, abs=1e-12), name
    # And the scores' PSI and KS likewise (the capture carries scores with six decimals)
    trained_scores = np.array([score(r) for r in baseline_rows])
    seen_scores = np.array([float(f"{score(r):.6f}") for r in traffic])
    assert plan.baseline.prediction is not None
    assert report.prediction_psi == pytest.approx(
        reference_numeric_psi(trained_scores, seen_scores), rel=1e-9, abs=1e-12
    )
    assert report.prediction_ks == pytest.approx(
        reference_ks(plan.baseline.prediction.score_sample, seen_scores), rel=1e-9, abs=1e-12
    )
    # And the maxima name the feature they come from
    top = max(report.features, key=lambda f: f.psi)
    assert (report.max_feature_psi, report.max_psi_feature) == (top.psi, top.feature)


@pytest.mark.parametrize("delta", [0.0, 0.1, 0.5, -1.0, 2.0])
def test_a_normal_shifted_by_delta_gives_the_closed_form_psi_and_ks(delta: float) -> None:
    # Given a baseline of 20,000 draws of N(0, 1) and 20,000 captured draws of N(delta, 1)
    rng = np.random.default_rng(int(1000 + delta * 100))
    trained, seen = rng.normal(0.0, 1.0, 20_000), rng.normal(delta, 1.0, 20_000)
    document = pipeline_baseline(
        [{"x": repr(float(v)), "approved": "1"} for v in trained],
        feature_types={"x": "numeric"},
        protected_attribute=None,
        fixed_score=0.5,
    )
    plan = DriftPlan(Baseline.model_validate(document))
    sketch = plan.new_sketch()
    for start in range(0, len(seen), 100):
        sketch.add_request("".join(f"{float(v)!r}\n" for v in seen[start : start + 100]), None)
    # When the monitor reports
    psi, ks = feature(plan.report(sketch), "x")
    # Then PSI and KS are those of the two samples, computed from first principles
    assert psi == pytest.approx(reference_numeric_psi(trained, seen), rel=1e-9, abs=1e-12)
    assert ks == pytest.approx(reference_ks(plan.baseline.features["x"].sample, seen), rel=1e-9, abs=1e-12)  # type: ignore[union-attr]
    # And they are near the closed forms of the distributions (sampling noise only: the KS is against
    # the step's random sample of the baseline, so within the 95 % band of that sample and the traffic)
    reference_size = len(plan.baseline.features["x"].sample)  # type: ignore[union-attr]
    assert psi == pytest.approx(binned_psi_of_shift(delta), rel=0.1, abs=0.005)
    assert ks == pytest.approx(ks_of_shift(delta), abs=1.36 * math.sqrt(1 / reference_size + 1 / len(seen)))


@pytest.mark.parametrize(("n", "seed"), [(MIN_RECORDS, 2), (2000, 3), (5000, 4)])
def test_fresh_samples_of_the_baseline_distribution_stay_below_the_default_thresholds(
    plan: DriftPlan, n: int, seed: int
) -> None:
    # Given undrifted traffic, as small as the template's minimum record count and larger
    report = measure(plan, list(rows(n, seed=seed, drift=NO_DRIFT)))
    # Then no feature and not the scores cross the template's default alarm thresholds
    assert report.records == n
    assert report.max_feature_psi is not None and report.max_feature_psi < PSI_THRESHOLD
    assert report.prediction_ks is not None and report.prediction_ks < KS_THRESHOLD
    assert report.bias is not None and report.bias.drift < BIAS_THRESHOLD


def test_strong_drift_crosses_the_default_thresholds_in_the_features_that_moved(plan: DriftPlan) -> None:
    # Given STRONG_DRIFT: income x0.55, loans x1.8, two more late payments, mostly debt consolidation
    report = measure(plan, list(rows(2000, seed=5, drift=STRONG_DRIFT)))
    # Then the largest PSI crosses the default threshold, and so does the scores' KS
    assert report.max_feature_psi is not None and report.max_feature_psi > PSI_THRESHOLD
    assert report.prediction_ks is not None and report.prediction_ks > KS_THRESHOLD
    # And the income shift is measured at its known size
    delta = math.log(STRONG_DRIFT.income_factor) / INCOME_SIGMA  # -1.33 standard deviations
    income_psi, income_ks = feature(report, "income")
    assert income_psi == pytest.approx(binned_psi_of_shift(delta), rel=0.2)  # about 1.59
    assert income_ks == pytest.approx(ks_of_shift(delta), abs=0.05)  # about 0.49
    # And the drifted features are the ones that moved, not the others
    assert feature(report, "age")[0] < PSI_THRESHOLD
    assert feature(report, "purpose")[0] > PSI_THRESHOLD


@pytest.mark.parametrize("factor", [0.9, 0.8, 1.25], ids=["income-x0.9", "income-x0.8", "income-x1.25"])
def test_a_known_income_shift_is_measured_at_its_size(plan: DriftPlan, factor: float) -> None:
    # Given only income drifting by a known factor
    report = measure(plan, list(rows(4000, seed=6, drift=Drift(income_factor=factor))))
    delta = math.log(factor) / INCOME_SIGMA
    expected = binned_psi_of_shift(delta)  # x0.9: 0.052, x0.8: 0.234, x1.25: 0.234
    # Then the measured PSI matches the closed form within sampling noise
    income_psi, income_ks = feature(report, "income")
    assert income_psi == pytest.approx(expected, rel=0.3, abs=0.02)
    assert income_ks == pytest.approx(ks_of_shift(delta), abs=0.04)
    # And it crosses the default threshold exactly when the closed form says it should
    assert (income_psi > PSI_THRESHOLD) is (expected > PSI_THRESHOLD)
