"""Drift of a known size, injected into synthetic traffic, is measured at that size.

The baseline comes from 4,000 undrifted rows. Income is lognormal with sigma 0.45 on the log
scale, so multiplying it by a factor f shifts log(income) by delta = ln(f) / 0.45 standard
deviations. For such a shift the expected decile-binned PSI is
sum_i (a_i - 0.1) ln(a_i / 0.1), a_i = Phi(z_(i+1) - delta) - Phi(z_i - delta) with z_i the decile
z-scores, and the KS statistic is 2 Phi(|delta| / 2) - 1.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest

from closedloop.drift.baseline import Baseline
from closedloop.drift.capture import read_capture
from closedloop.drift.sketch import DriftPlan, DriftReport
from closedloop.settings import Settings
from closedloop_ops.synthetic import NO_DRIFT, STRONG_DRIFT, Drift, rows
from support.capture import baseline_document, capture_file
from support.stack import stack_env

INCOME_SIGMA = 0.45
DEFAULTS = Settings.from_environ(stack_env())


@pytest.fixture(scope="module")
def plan() -> DriftPlan:
    return DriftPlan(Baseline.model_validate(baseline_document(n=4000, seed=1)))


def measure(plan: DriftPlan, n: int, seed: int, drift: Drift) -> DriftReport:
    """Traffic of `n` rows through the real capture format and reader."""
    from datetime import UTC, datetime

    data = capture_file(rows(n, seed=seed, drift=drift), start=datetime(2026, 11, 27, tzinfo=UTC), rows_per_request=5)
    sketch = plan.new_sketch()
    for request in read_capture([data]):
        sketch.add_request(request.inputs, request.outputs)
    return plan.report(sketch)


def binned_psi_of_shift(delta: float) -> float:
    normal = NormalDist()
    z = [-math.inf, *(normal.inv_cdf(i / 10) for i in range(1, 10)), math.inf]
    shares = [normal.cdf(z[i + 1] - delta) - normal.cdf(z[i] - delta) for i in range(10)]
    return sum((a - 0.1) * math.log(a / 0.1) for a in shares)


def ks_of_shift(delta: float) -> float:
    return 2 * NormalDist().cdf(abs(delta) / 2) - 1


def feature(report: DriftReport, name: str) -> tuple[float, float | None]:
    found = next(f for f in report.features if f.feature == name)
    return found.psi, found.ks


def test_the_default_thresholds_are_the_ones_tested() -> None:
    assert (DEFAULTS.drift_psi_threshold, DEFAULTS.drift_ks_threshold, DEFAULTS.drift_min_records) == (0.2, 0.15, 500)


@pytest.mark.parametrize(("n", "seed"), [(500, 2), (2000, 3), (5000, 4)])
def test_fresh_samples_of_the_baseline_distribution_stay_below_the_thresholds(
    plan: DriftPlan, n: int, seed: int
) -> None:
    # Given undrifted traffic, as small as the minimum record count and larger
    report = measure(plan, n, seed, NO_DRIFT)
    # Then no feature and not the scores cross the default alarm thresholds
    assert report.records == n
    assert report.max_feature_psi is not None and report.max_feature_psi < DEFAULTS.drift_psi_threshold
    assert report.prediction_ks is not None and report.prediction_ks < DEFAULTS.drift_ks_threshold
    assert report.bias is not None and report.bias.drift < DEFAULTS.bias_drift_threshold


def test_strong_drift_raises_max_feature_psi_far_above_the_threshold(plan: DriftPlan) -> None:
    # Given STRONG_DRIFT: income x0.55, loans x1.8, two more late payments, mostly debt consolidation
    report = measure(plan, 2000, 5, STRONG_DRIFT)
    # Then the largest PSI crosses the default threshold, and so do the scores' KS
    assert report.max_feature_psi is not None and report.max_feature_psi > DEFAULTS.drift_psi_threshold
    assert report.prediction_ks is not None and report.prediction_ks > DEFAULTS.drift_ks_threshold
    # And the income shift is measured at its known size
    delta = math.log(STRONG_DRIFT.income_factor) / INCOME_SIGMA  # -1.33 standard deviations
    income_psi, income_ks = feature(report, "income")
    assert income_psi == pytest.approx(binned_psi_of_shift(delta), rel=0.2)  # about 1.59
    assert income_ks == pytest.approx(ks_of_shift(delta), abs=0.05)  # about 0.49
    # And the drifted features are the ones that moved, not the others
    assert feature(report, "age")[0] < DEFAULTS.drift_psi_threshold
    assert feature(report, "purpose")[0] > DEFAULTS.drift_psi_threshold


@pytest.mark.parametrize(
    ("factor", "above"),
    [(0.9, False), (0.8, True), (1.25, True)],
    ids=["income-x0.9", "income-x0.8", "income-x1.25"],
)
def test_a_known_income_shift_is_measured_at_its_size(plan: DriftPlan, factor: float, above: bool) -> None:
    # Given only income drifting by a known factor
    report = measure(plan, 4000, 6, Drift(income_factor=factor))
    delta = math.log(factor) / INCOME_SIGMA
    expected = binned_psi_of_shift(delta)  # x0.9: 0.052, x0.8: 0.234, x1.25: 0.234
    # Then the measured PSI matches the closed form within sampling noise
    income_psi, income_ks = feature(report, "income")
    assert income_psi == pytest.approx(expected, rel=0.3, abs=0.02)
    assert income_ks == pytest.approx(ks_of_shift(delta), abs=0.04)
    # And it crosses the default threshold exactly when the closed form says it should
    assert (expected > DEFAULTS.drift_psi_threshold) is above
    assert (income_psi > DEFAULTS.drift_psi_threshold) is above
