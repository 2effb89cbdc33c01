"""Bounded accumulators of captured traffic, and the drift report computed from them.

A `DriftPlan` is built once per run from the live model's baseline. Its `CaptureSketch`es count
what requests contain — per numeric feature the quantile-bin counts and the counts against the
baseline sample's distinct values (which give the exact KS statistic, see
`stats.ks_from_counts`), per categorical feature the category counts (at most
`MAX_NEW_CATEGORIES` beyond the baseline's), the same for scores, and per protected group the
rows and positive predictions. Memory is proportional to the baseline, never to the traffic; two
sketches merge by adding counts, so a file is counted into its own sketch and merged only once
the whole file proved readable.
"""

from __future__ import annotations

import csv
import math
from bisect import bisect_left, bisect_right
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import ConfigDict

from closedloop.drift.baseline import (
    POSITIVE_SCORE,
    Baseline,
    BiasReport,
    CategoricalFeatureBaseline,
    NumericFeatureBaseline,
)
from closedloop.drift.stats import PSI_EPSILON, ReferenceCdf, ks_from_counts, proportions, psi
from closedloop.model import Model

MAX_NEW_CATEGORIES = 256
MAX_GROUPS = 64
OTHER = "\x00other"  # bucket of categories (or groups) beyond the bound; cannot clash with CSV text
MIN_GROUP_ROWS = 30  # fewer rows of a group than this give no bias figure (too noisy)


class FeatureDrift(Model):
    model_config = ConfigDict(frozen=True)

    feature: str
    kind: Literal["numeric", "categorical"]
    psi: float
    ks: float | None = None
    values: int
    missing: int


BIAS_CONFIDENCE_Z = 1.96


class BiasDrift(Model):
    model_config = ConfigDict(frozen=True)

    attribute: str
    disadvantaged_group: str
    dppl_now: float
    dppl_reference: float
    reference: Literal["evaluation", "baseline"]
    drift: float  # what is published: the change, less its sampling noise (never below 0)
    raw_change: float  # |dppl_now - dppl_reference|
    standard_error: float
    rows_advantaged: int
    rows_disadvantaged: int


class DriftReport(Model):
    """What one run measured. Counts and statistics only — never a captured value."""

    model_config = ConfigDict(frozen=True)

    records: int
    requests: int
    invalid_rows: int
    invalid_requests: int
    features: list[FeatureDrift]
    max_feature_psi: float | None = None
    max_psi_feature: str | None = None
    max_feature_ks: float | None = None
    max_ks_feature: str | None = None
    predictions: int = 0
    prediction_psi: float | None = None
    prediction_ks: float | None = None
    positive_rate: float | None = None
    bias: BiasDrift | None = None
    bias_note: str = ""


@dataclass(frozen=True)
class _Numeric:
    name: str
    column: int
    inner_edges: list[float]
    expected: list[float]  # shares of the bins, then of "missing"
    reference: ReferenceCdf | None


@dataclass(frozen=True)
class _Categorical:
    name: str
    column: int
    expected: dict[str, float]  # shares of each category and of "" (missing)


@dataclass(frozen=True)
class _Scores:
    inner_edges: list[float]
    expected: list[float]
    reference: ReferenceCdf | None


def _with_missing(shares: Sequence[float], missing_rate: float) -> list[float]:
    total = float(sum(shares))
    return [s / total * (1.0 - missing_rate) for s in shares] + [missing_rate]


class DriftPlan:
    """How to count captured rows for one baseline, and how to turn the counts into drift."""

    def __init__(self, baseline: Baseline, bias_report: BiasReport | None = None) -> None:
        self.baseline = baseline
        self.width = len(baseline.feature_order)
        self.numeric: list[_Numeric] = []
        self.categorical: list[_Categorical] = []
        for column, name in enumerate(baseline.feature_order):
            spec = baseline.features[name]
            if isinstance(spec, NumericFeatureBaseline):
                self.numeric.append(
                    _Numeric(
                        name=name,
                        column=column,
                        inner_edges=list(spec.quantile_edges[1:-1]),
                        expected=_with_missing(spec.bin_proportions, spec.missing_rate),
                        reference=ReferenceCdf(spec.sample) if spec.sample else None,
                    )
                )
            else:
                self.categorical.append(_categorical(name, column, spec))
        prediction = baseline.prediction
        self.scores = (
            _Scores(
                inner_edges=list(prediction.score_quantile_edges[1:-1]),
                expected=proportions(prediction.score_bin_proportions),
                reference=ReferenceCdf(prediction.score_sample) if prediction.score_sample else None,
            )
            if prediction is not None
            else None
        )
        self.bias_attribute, self.disadvantaged, self.reference_dppl, self.reference_source = _bias_reference(
            baseline, bias_report
        )

    def new_sketch(self) -> CaptureSketch:
        return CaptureSketch(self)

    def report(self, sketch: CaptureSketch) -> DriftReport:
        """The drift of everything counted in `sketch` against the baseline.

        Raises:
            ValueError: the sketch belongs to another plan.
        """
        if sketch.plan is not self:
            raise ValueError("the sketch was made by another plan")
        features: list[FeatureDrift] = []
        if sketch.rows:
            for index, spec in enumerate(self.numeric):
                bins = sketch.numeric_bins[index]
                counted = sum(sketch.numeric_hits[index]) + sum(sketch.numeric_gaps[index])
                ks = (
                    ks_from_counts(spec.reference, sketch.numeric_hits[index], sketch.numeric_gaps[index])
                    if spec.reference is not None and counted
                    else None
                )
                features.append(
                    FeatureDrift(
                        feature=spec.name,
                        kind="numeric",
                        psi=psi(spec.expected, bins, PSI_EPSILON),
                        ks=ks,
                        values=counted,
                        missing=bins[-1],
                    )
                )
            for index, cat in enumerate(self.categorical):
                counts = sketch.categorical_counts[index]
                features.append(
                    FeatureDrift(
                        feature=cat.name,
                        kind="categorical",
                        psi=_categorical_psi(cat.expected, counts),
                        values=sum(v for k, v in counts.items() if k != ""),
                        missing=counts.get("", 0),
                    )
                )
        order = {name: i for i, name in enumerate(self.baseline.feature_order)}
        features.sort(key=lambda f: order[f.feature])
        top_psi = max(features, key=lambda f: f.psi, default=None)
        with_ks = [f for f in features if f.ks is not None]
        top_ks = max(with_ks, key=lambda f: f.ks or 0.0, default=None)
        prediction_psi = prediction_ks = positive_rate = None
        if self.scores is not None and sketch.predictions:
            prediction_psi = psi(self.scores.expected, sketch.score_bins, PSI_EPSILON)
            if self.scores.reference is not None:
                prediction_ks = ks_from_counts(self.scores.reference, sketch.score_hits, sketch.score_gaps)
            positive_rate = sketch.positives / sketch.predictions
        bias, bias_note = self._bias(sketch)
        return DriftReport(
            records=sketch.rows,
            requests=sketch.requests,
            invalid_rows=sketch.invalid_rows,
            invalid_requests=sketch.invalid_requests,
            features=features,
            max_feature_psi=top_psi.psi if top_psi else None,
            max_psi_feature=top_psi.feature if top_psi else None,
            max_feature_ks=top_ks.ks if top_ks else None,
            max_ks_feature=top_ks.feature if top_ks else None,
            predictions=sketch.predictions,
            prediction_psi=prediction_psi,
            prediction_ks=prediction_ks,
            positive_rate=positive_rate,
            bias=bias,
            bias_note=bias_note,
        )

    def _bias(self, sketch: CaptureSketch) -> tuple[BiasDrift | None, str]:
        if self.bias_attribute is None or self.disadvantaged is None or self.reference_dppl is None:
            return None, "the model has no bias figure to compare with"
        if not sketch.group_rows:
            return None, "captured requests carry no protected attribute"
        rows_d = sketch.group_rows.get(self.disadvantaged, 0)
        rows_a = sum(n for g, n in sketch.group_rows.items() if g != self.disadvantaged)
        if rows_d < MIN_GROUP_ROWS or rows_a < MIN_GROUP_ROWS:
            return None, f"too few rows per group ({rows_a} advantaged, {rows_d} disadvantaged; need {MIN_GROUP_ROWS})"
        positives_a = sum(n for g, n in sketch.group_positives.items() if g != self.disadvantaged)
        q_a = positives_a / rows_a
        q_d = sketch.group_positives.get(self.disadvantaged, 0) / rows_d
        now = q_a - q_d
        # The DPPL of a few hundred rows moves by several points by chance alone (two proportions):
        # publish the change less 1.96 standard errors, so the alarm means "drifted, with ~97.5 %
        # confidence" rather than "a small sample was unlucky".
        standard_error = math.sqrt(q_a * (1 - q_a) / rows_a + q_d * (1 - q_d) / rows_d)
        change = abs(now - self.reference_dppl)
        return (
            BiasDrift(
                attribute=self.bias_attribute,
                disadvantaged_group=self.disadvantaged,
                dppl_now=now,
                dppl_reference=self.reference_dppl,
                reference=self.reference_source,
                drift=max(0.0, change - BIAS_CONFIDENCE_Z * standard_error),
                raw_change=change,
                standard_error=standard_error,
                rows_advantaged=rows_a,
                rows_disadvantaged=rows_d,
            ),
            "",
        )


def _categorical(name: str, column: int, spec: CategoricalFeatureBaseline) -> _Categorical:
    total = sum(spec.frequencies.values())
    expected = {k: v / total * (1.0 - spec.missing_rate) for k, v in spec.frequencies.items()}
    expected[""] = spec.missing_rate
    return _Categorical(name=name, column=column, expected=expected)


def _categorical_psi(expected: dict[str, float], counts: dict[str, int]) -> float:
    buckets = list(expected) + [k for k in counts if k not in expected]
    return psi([expected.get(k, 0.0) for k in buckets], [counts.get(k, 0) for k in buckets], PSI_EPSILON)


def _bias_reference(
    baseline: Baseline, report: BiasReport | None
) -> tuple[str | None, str | None, float | None, Literal["evaluation", "baseline"]]:
    attribute = (baseline.bias.protected_attribute if baseline.bias else None) or baseline.protected_attribute
    if attribute is None:
        return None, None, None, "baseline"
    disadvantaged = baseline.bias.disadvantaged_group if baseline.bias else None
    if report is not None:
        found = report.dppl(attribute, disadvantaged)
        if found is not None:
            return attribute, found[0], found[1], "evaluation"
    if baseline.bias is not None and baseline.bias.dppl is not None:
        return attribute, baseline.bias.disadvantaged_group, baseline.bias.dppl, "baseline"
    return attribute, disadvantaged, None, "baseline"


@dataclass(eq=False)
class CaptureSketch:
    """Counts of captured rows for one `DriftPlan`; add requests, merge sketches, then report."""

    plan: DriftPlan
    rows: int = 0
    requests: int = 0
    invalid_rows: int = 0
    invalid_requests: int = 0
    numeric_bins: list[list[int]] = field(init=False)
    numeric_hits: list[list[int]] = field(init=False)
    numeric_gaps: list[list[int]] = field(init=False)
    categorical_counts: list[dict[str, int]] = field(init=False)
    predictions: int = 0
    positives: int = 0
    score_bins: list[int] = field(init=False)
    score_hits: list[int] = field(init=False)
    score_gaps: list[int] = field(init=False)
    _numeric_counters: list[tuple[int, list[float], list[float], int, list[int], list[int], list[int]]] = field(
        init=False, repr=False, compare=False
    )
    group_rows: dict[str, int] = field(default_factory=dict)
    group_positives: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        plan = self.plan
        self.numeric_bins = [[0] * len(spec.expected) for spec in plan.numeric]
        self.numeric_hits = [[0] * len(spec.reference or ()) for spec in plan.numeric]
        self.numeric_gaps = [[0] * (len(spec.reference or ()) + 1) for spec in plan.numeric]
        # per numeric feature, what counting one value touches (the per-row loop looks up nothing else)
        self._numeric_counters = [
            (spec.column, spec.inner_edges, reference, len(reference), bins, hits, gaps)
            for spec, bins, hits, gaps in zip(
                plan.numeric, self.numeric_bins, self.numeric_hits, self.numeric_gaps, strict=True
            )
            for reference in [spec.reference.values if spec.reference else []]
        ]
        self.categorical_counts = [{} for _ in plan.categorical]
        scores = plan.scores
        self.score_bins = [0] * (len(scores.expected) if scores else 0)
        self.score_hits = [0] * (len(scores.reference or ()) if scores else 0)
        self.score_gaps = [0] * ((len(scores.reference or ()) + 1) if scores else 0)

    def add_request(self, inputs: str, outputs: str | None) -> bool:
        """Count one captured request (CSV rows, and the scores returned for them if captured).

        Rows of the wrong width are counted as invalid and left out; a request whose scores do not
        match its rows one to one is left out whole. Returns whether the request was counted.
        """
        lines = [line for line in inputs.splitlines() if line.strip()]
        scores: list[float] | None = None
        if outputs is not None:
            scores = _scores(outputs, len(lines))
            if scores is None:
                self.invalid_requests += 1
                return False
        self.requests += 1
        width = self.plan.width
        for row, line in enumerate(lines):
            cells = line.split(",") if '"' not in line else next(csv.reader([line]))
            if len(cells) != width and len(cells) != width + 1:
                self.invalid_rows += 1
                continue
            self.rows += 1
            self._count_features(cells)
            if scores is not None:
                score = scores[row]
                self._add_score(score)
                if len(cells) > width:
                    self._add_group(cells[width].strip(), score >= POSITIVE_SCORE)
        return True

    def _count_features(self, cells: list[str]) -> None:
        for column, inner_edges, values, n_values, bins, hits, gaps in self._numeric_counters:
            try:
                value = float(cells[column])
            except ValueError:
                value = math.nan
            if math.isnan(value):  # empty, not a number, or NaN: the missing bucket
                bins[-1] += 1
                continue
            bins[bisect_right(inner_edges, value)] += 1
            if n_values:
                at = bisect_left(values, value)
                if at < n_values and values[at] == value:
                    hits[at] += 1
                else:
                    gaps[at] += 1
        for index, cat in enumerate(self.plan.categorical):
            counts = self.categorical_counts[index]
            text = cells[cat.column].strip()
            if (
                text not in counts
                and text not in cat.expected
                and len(counts) >= MAX_NEW_CATEGORIES + len(cat.expected)
            ):
                text = OTHER
            counts[text] = counts.get(text, 0) + 1

    def _add_score(self, score: float) -> None:
        scores = self.plan.scores
        self.predictions += 1
        if score >= POSITIVE_SCORE:
            self.positives += 1
        if scores is None:
            return
        self.score_bins[bisect_right(scores.inner_edges, score)] += 1
        reference = scores.reference
        if reference is not None:
            at = bisect_left(reference.values, score)
            if at < len(reference.values) and reference.values[at] == score:
                self.score_hits[at] += 1
            else:
                self.score_gaps[at] += 1

    def _add_group(self, group: str, positive: bool) -> None:
        if not group:
            return
        if group not in self.group_rows and len(self.group_rows) >= MAX_GROUPS:
            group = OTHER
        self.group_rows[group] = self.group_rows.get(group, 0) + 1
        if positive:
            self.group_positives[group] = self.group_positives.get(group, 0) + 1

    def merge(self, other: CaptureSketch) -> None:
        """Add another sketch's counts (of the same plan) to this one.

        Raises:
            ValueError: the sketches belong to different plans.
        """
        if other.plan is not self.plan:
            raise ValueError("only sketches of one plan can be merged")
        self.rows += other.rows
        self.requests += other.requests
        self.invalid_rows += other.invalid_rows
        self.invalid_requests += other.invalid_requests
        self.predictions += other.predictions
        self.positives += other.positives
        for mine, theirs in (
            *zip(self.numeric_bins, other.numeric_bins, strict=True),
            *zip(self.numeric_hits, other.numeric_hits, strict=True),
            *zip(self.numeric_gaps, other.numeric_gaps, strict=True),
            (self.score_bins, other.score_bins),
            (self.score_hits, other.score_hits),
            (self.score_gaps, other.score_gaps),
        ):
            for i, count in enumerate(theirs):
                if count:
                    mine[i] += count
        for index, counts in enumerate(other.categorical_counts):
            known = self.plan.categorical[index].expected
            _add_bounded(self.categorical_counts[index], counts, MAX_NEW_CATEGORIES + len(known), known)
        _add_bounded(self.group_rows, other.group_rows, MAX_GROUPS)
        for key, count in other.group_positives.items():
            group = key if key in self.group_rows else OTHER  # where its rows went
            self.group_positives[group] = self.group_positives.get(group, 0) + count


def _add_bounded(into: dict[str, int], counts: dict[str, int], bound: int, known: Container[str] = ()) -> None:
    """Add counts by key; a key beyond `bound` distinct keys (and not `known`) goes to OTHER."""
    for key, count in counts.items():
        if key not in into and key not in known and len(into) >= bound:
            key = OTHER  # noqa: PLW2901 - the bucket it is counted in
        into[key] = into.get(key, 0) + count


def _scores(outputs: str, rows: int) -> list[float] | None:
    lines = [line for line in outputs.splitlines() if line.strip()]
    if len(lines) != rows:
        return None
    scores: list[float] = []
    for line in lines:
        try:
            score = float(line)
        except ValueError:
            return None
        if not math.isfinite(score):
            return None
        scores.append(score)
    return scores
