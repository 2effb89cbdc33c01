"""PSI and KS in plain Python, against values computed by hand (and scipy where it applies)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp

from closedloop.drift.stats import (
    PSI_EPSILON,
    ReferenceCdf,
    bin_counts,
    bin_index,
    categorical_psi,
    ks_from_counts,
    ks_statistic,
    psi,
    quantile,
    quantile_edges,
)


def test_psi_of_four_buckets_by_hand() -> None:
    # Given a uniform baseline over four buckets and 10/20/30/40 captured values
    # When PSI is computed
    value = psi([0.25, 0.25, 0.25, 0.25], [10, 20, 30, 40])
    # Then it is sum (a - e) ln(a / e):
    #   (0.1-0.25) ln 0.4 + (0.2-0.25) ln 0.8 + (0.3-0.25) ln 1.2 + (0.4-0.25) ln 1.6
    #   = 0.1374436 + 0.0111572 + 0.0091161 + 0.0705003 = 0.2282172
    assert value == pytest.approx(0.2282172, abs=1e-6)


def test_an_empty_baseline_bucket_costs_epsilon_not_infinity() -> None:
    # Given a baseline bucket nobody fell into, which captured traffic now fills
    value = psi([0.5, 0.5, 0.0], [50, 25, 25])
    # Then the empty share is taken as 1e-4:
    #   0 + (0.25-0.5) ln 0.5 + (0.25-0.0001) ln 2500 = 0.1732868 + 1.9552290 = 2.1285158
    assert PSI_EPSILON == 1e-4
    assert value == pytest.approx(2.1285158, abs=1e-6)


def test_identical_distributions_have_zero_psi_and_counts_equal_shares() -> None:
    assert psi([0.1, 0.2, 0.7], [0.1, 0.2, 0.7]) == 0.0
    assert psi([1, 2, 7], [10, 20, 70]) == pytest.approx(0.0, abs=1e-15)


def test_categorical_psi_by_hand_with_an_unseen_category() -> None:
    # Given a baseline of two purposes and traffic with a third one the model never saw
    value = categorical_psi({"car": 0.5, "home": 0.5}, {"car": 30, "home": 10, "boat": 10})
    # Then boat counts as an empty baseline bucket:
    #   (0.2-0.0001) ln 2000 + (0.6-0.5) ln 1.2 + (0.2-0.5) ln 0.4 = 1.5194203 + 0.0182322 + 0.2748872
    assert value == pytest.approx(1.8125397, abs=1e-6)


def test_psi_refuses_mismatched_or_empty_sides() -> None:
    with pytest.raises(ValueError, match="buckets"):
        psi([0.5, 0.5], [1, 2, 3])
    with pytest.raises(ValueError, match="non-empty"):
        psi([0.5, 0.5], [0, 0])


def test_ks_by_hand() -> None:
    # F1 - F2 at 2: 0.5 - 0 (the largest gap)
    assert ks_statistic([1, 2, 3, 4], [3, 4, 5, 6]) == 0.5
    # at 1: 1/3 - 0; at 1.5: 1/3 - 1/2; at 2: 2/3 - 1/2; at 2.5: 2/3 - 1 -> largest |gap| 1/3
    assert ks_statistic([1, 2, 3], [1.5, 2.5]) == pytest.approx(1 / 3)
    assert ks_statistic([5, 1, 3], [3, 1, 5]) == 0.0
    assert ks_statistic([1, 2], [3, 4]) == 1.0
    with pytest.raises(ValueError):
        ks_statistic([], [1.0])


def test_ks_from_counts_by_hand_with_ties() -> None:
    # Given the reference [1, 2, 2, 3] (distinct 1, 2, 3 at cumulative 1/4, 3/4, 1)
    reference = ReferenceCdf([2, 1, 3, 2])
    assert reference.values == [1, 2, 3]
    assert reference.cumulative == [0.25, 0.75, 1.0]
    # And the counted values 0.5, 2, 2.5, 4: hits (=1, =2, =3) and gaps (<1, 1..2, 2..3, >3)
    hits, gaps = [0, 1, 0], [1, 0, 1, 1]
    # Then the KS statistic is the one of the two samples: |F| gaps 1/4 at 0.5, 2 and 3
    assert ks_from_counts(reference, hits, gaps) == 0.25
    assert ks_statistic([1, 2, 2, 3], [0.5, 2, 2.5, 4]) == 0.25


def test_ks_from_counts_refuses_counts_of_another_shape() -> None:
    reference = ReferenceCdf([1.0, 2.0])
    with pytest.raises(ValueError, match="fit"):
        ks_from_counts(reference, [0, 0, 0], [0, 0, 0])
    with pytest.raises(ValueError, match="at least one"):
        ks_from_counts(reference, [0, 0], [0, 0, 0])


def _counts(reference: ReferenceCdf, values: list[float]) -> tuple[list[int], list[int]]:
    hits = [0] * len(reference)
    gaps = [0] * (len(reference) + 1)
    for value in values:
        at = sum(v < value for v in reference.values)
        if at < len(reference) and reference.values[at] == value:
            hits[at] += 1
        else:
            gaps[at] += 1
    return hits, gaps


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(-20, 20), min_size=1, max_size=60),
    st.lists(st.integers(-25, 25), min_size=1, max_size=200),
)
def test_streamed_ks_is_exactly_the_two_sample_ks(reference_sample: list[int], counted: list[int]) -> None:
    # Given any reference sample and any counted values, ties and values outside included
    reference = ReferenceCdf(reference_sample)
    hits, gaps = _counts(reference, [float(v) for v in counted])
    # Then counting against the reference gives the two-sample statistic (and scipy's)
    streamed = ks_from_counts(reference, hits, gaps)
    assert streamed == pytest.approx(ks_statistic(reference_sample, counted), abs=1e-12)
    assert streamed == pytest.approx(ks_2samp(reference_sample, counted, method="asymp").statistic, abs=1e-12)


def test_quantiles_interpolate_like_numpy() -> None:
    assert quantile([1, 2, 3, 4], 0.5) == 2.5
    assert quantile([1, 2, 3, 4], 0.0) == 1
    assert quantile([1, 2, 3, 4], 1.0) == 4
    assert quantile_edges([float(i) for i in range(11)]) == [float(i) for i in range(11)]
    rng = random.Random(3)
    values = sorted(rng.lognormvariate(10, 0.5) for _ in range(999))
    expected = np.quantile(values, [i / 10 for i in range(11)])
    assert quantile_edges(values) == pytest.approx(list(expected), rel=1e-12)
    with pytest.raises(ValueError):
        quantile([], 0.5)


def test_the_binning_rule_with_repeated_edges_and_outliers() -> None:
    # Given edges [0, 0, 0, 1, 2] (a feature that is mostly 0): 4 bins, inner edges [0, 0, 1]
    edges = [0.0, 0.0, 0.0, 1.0, 2.0]
    inner = edges[1:-1]
    # Then below-minimum values go to the first bin, zeros to the bin starting at the last 0,
    # and the maximum and beyond to the last bin
    assert [bin_index(inner, x) for x in (-5.0, 0.0, 0.5, 1.0, 2.0, 99.0)] == [0, 2, 2, 3, 3, 3]
    assert bin_counts([-5.0, 0.0, 0.0, 0.5, 1.0, 2.0, 99.0], edges) == [1, 0, 3, 3]


def test_psi_of_a_normal_mean_shift_approaches_its_closed_form() -> None:
    # Given decile bins of N(0, 1) and a large sample of N(0.5, 1)
    rng = random.Random(11)
    base = sorted(rng.gauss(0, 1) for _ in range(200_000))
    edges = quantile_edges(base)
    shifted = [rng.gauss(0.5, 1) for _ in range(200_000)]
    # Then the binned PSI is a little below the continuous symmetric KL divergence, delta^2 = 0.25
    value = psi([0.1] * 10, bin_counts(shifted, edges))
    assert 0.2 < value < 0.25
    assert math.isfinite(value)
