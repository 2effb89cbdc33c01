"""Drift statistics in plain Python: population stability index and two-sample Kolmogorov-Smirnov.

The binning rule is shared by whoever writes a baseline and by the monitor that reads it, so that
the proportions on both sides mean the same thing:

* numeric features have 11 quantile edges e0 <= e1 <= ... <= e10 (min, deciles, max); bin i holds
  e_i <= x < e_(i+1); values below e0 fall into bin 0 and values at or above e10 into bin 9.
  Repeated edges (a feature with many equal values) make empty bins, which is fine: the bin index
  is `bisect_right(e1..e9, x)`, the same on both sides.
* a missing value (empty field, or not a number where a number belongs) is its own bucket.

PSI = sum over buckets of (a - e) * ln(a / e), a and e the captured and baseline shares, each at
least `PSI_EPSILON` so that an empty bucket costs a finite amount instead of infinity.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from itertools import islice

PSI_EPSILON = 1e-4
DEFAULT_BINS = 10


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile of sorted values by linear interpolation between order statistics.

    Raises:
        ValueError: no values, or q outside [0, 1].
    """
    if not sorted_values:
        raise ValueError("quantile of no values")
    if not 0.0 <= q <= 1.0:
        raise ValueError("q must lie in [0, 1]")
    position = q * (len(sorted_values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    weight = position - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * weight


def quantile_edges(sorted_values: Sequence[float], bins: int = DEFAULT_BINS) -> list[float]:
    """`bins + 1` edges: the minimum, the inner quantiles and the maximum of sorted values."""
    return [quantile(sorted_values, i / bins) for i in range(bins + 1)]


def bin_index(inner_edges: Sequence[float], value: float) -> int:
    """The bin of `value` given the inner edges e1..e(n-1) (see the module's binning rule)."""
    return bisect_right(inner_edges, value)


def bin_counts(values: Iterable[float], edges: Sequence[float]) -> list[int]:
    """How many values fall into each of the `len(edges) - 1` bins."""
    inner = list(edges[1:-1])
    counts = [0] * (len(edges) - 1)
    for value in values:
        counts[bisect_right(inner, value)] += 1
    return counts


def proportions(counts: Sequence[float]) -> list[float]:
    """Counts as shares of their total (all zeros when the total is zero)."""
    total = float(sum(counts))
    return [c / total for c in counts] if total > 0 else [0.0 for _ in counts]


def psi(expected: Sequence[float], actual: Sequence[float], epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of `actual` against `expected` over the same buckets.

    Both sides may be counts or shares: each is normalised to shares first.

    Raises:
        ValueError: the sides have different lengths, or one of them is empty or all zero.
    """
    if len(expected) != len(actual):
        raise ValueError(f"expected {len(expected)} buckets, got {len(actual)}")
    expected_total = float(sum(expected))
    actual_total = float(sum(actual))
    if expected_total <= 0 or actual_total <= 0:
        raise ValueError("PSI needs a non-empty distribution on both sides")
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        pe = max(e / expected_total, epsilon)
        pa = max(a / actual_total, epsilon)
        total += (pa - pe) * math.log(pa / pe)
    return total


def categorical_psi(expected: Mapping[str, float], actual: Mapping[str, float], epsilon: float = PSI_EPSILON) -> float:
    """PSI over category frequencies: categories seen on either side are the buckets.

    A category the baseline never saw counts as an empty baseline bucket (share `epsilon`).
    """
    categories = sorted(set(expected) | set(actual))
    return psi([expected.get(c, 0.0) for c in categories], [actual.get(c, 0.0) for c in categories], epsilon=epsilon)


def ks_statistic(first: Iterable[float], second: Iterable[float]) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs.

    Raises:
        ValueError: one of the samples is empty.
    """
    a = sorted(first)
    b = sorted(second)
    n, m = len(a), len(b)
    if not n or not m:
        raise ValueError("KS needs two non-empty samples")
    i = j = 0
    largest = 0.0
    while i < n and j < m:
        value = a[i] if a[i] <= b[j] else b[j]
        while i < n and a[i] <= value:
            i += 1
        while j < m and b[j] <= value:
            j += 1
        largest = max(largest, abs(i / n - j / m))
    return largest


class ReferenceCdf:
    """A fixed reference sample, prepared for the exact streaming KS of `EcdfCounts`.

    Values are kept distinct and sorted with the reference's cumulative shares at each one.
    """

    __slots__ = ("cumulative", "values")

    def __init__(self, sample: Iterable[float]) -> None:
        ordered = sorted(sample)
        if not ordered:
            raise ValueError("a reference sample needs at least one value")
        values: list[float] = []
        cumulative: list[float] = []
        n = len(ordered)
        for index, value in enumerate(ordered, start=1):
            if values and values[-1] == value:
                cumulative[-1] = index / n
            else:
                values.append(value)
                cumulative.append(index / n)
        self.values = values
        self.cumulative = cumulative

    def __len__(self) -> int:
        return len(self.values)


def ks_from_counts(reference: ReferenceCdf, hits: Sequence[int], gaps: Sequence[int]) -> float:
    """The exact two-sample KS statistic between the reference sample and a counted sample.

    The counted sample is summarised against the reference's distinct values u_1 < ... < u_k:
    `hits[j]` values equal to u_(j+1) and `gaps[j]` values strictly between u_j and u_(j+1)
    (`gaps[0]` below u_1, `gaps[k]` above u_k). Both empirical CDFs are step functions, and between
    two reference values the reference CDF is flat while the counted one only rises, so the
    largest gap is at a reference value or just before the next one — both known from the counts.
    This is the same number as `ks_statistic(reference sample, every counted value)`, in memory
    proportional to the reference, however many values were counted.

    Raises:
        ValueError: nothing was counted, or the counts do not fit the reference.
    """
    k = len(reference.values)
    if len(hits) != k or len(gaps) != k + 1:
        raise ValueError("counts do not fit the reference")
    total = sum(hits) + sum(gaps)
    if total <= 0:
        raise ValueError("KS needs at least one counted value")
    seen = gaps[0]
    largest = seen / total
    # the hot loop of a drift run (every reference value of every numeric feature): no calls in it
    for level, hit, gap in zip(reference.cumulative, hits, islice(gaps, 1, None), strict=True):
        seen += hit
        gap_at = level - seen / total
        if gap_at < 0:
            gap_at = -gap_at
        if gap_at > largest:  # noqa: PLR1730 - max() is a call in the hot loop
            largest = gap_at
        seen += gap
        gap_at = level - seen / total
        if gap_at < 0:
            gap_at = -gap_at
        if gap_at > largest:  # noqa: PLR1730 - max() is a call in the hot loop
            largest = gap_at
    return largest
