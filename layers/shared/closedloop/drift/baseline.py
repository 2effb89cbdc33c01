"""The drift monitor's inputs from the pipeline: `baseline.json` and Clarify's `bias.json`.

`baseline.json` is the model package's `DriftCheckBaselines.ModelDataQuality.Statistics`: per
feature the quantile bins (numeric) or category frequencies (categorical) of the training data, a
sorted sample for KS, the same for the model's scores, and the positive rates of the protected
groups. `build_baseline` writes one from rows and scores with the binning rule of
`closedloop.drift.stats`, so a baseline and the monitor always agree on what a bin is.
`bias.json` is `ModelMetrics.Bias.PostTrainingReport`, in SageMaker Clarify's analysis format; the
monitor reads the evaluation's DPPL from it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from itertools import pairwise
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from closedloop.drift.stats import DEFAULT_BINS, bin_counts, proportions, quantile_edges
from closedloop.model import Model

SCHEMA = "closedloop.baseline/1"
DEFAULT_SAMPLE_SIZE = 1000
POSITIVE_SCORE = 0.5  # the predicted label is `score >= 0.5` (inference contract)


def _finite(values: Sequence[float], what: str) -> None:
    if any(not math.isfinite(v) for v in values):
        raise ValueError(f"{what} must be finite numbers")


def _check_bins(edges: Sequence[float], shares: Sequence[float], what: str) -> None:
    _finite(edges, f"{what} edges")
    _finite(shares, f"{what} proportions")
    if len(edges) < 2:
        raise ValueError(f"{what} needs at least two edges")
    if any(b < a for a, b in pairwise(edges)):
        raise ValueError(f"{what} edges must not decrease")
    if len(shares) != len(edges) - 1:
        raise ValueError(f"{what} needs one proportion per bin ({len(edges) - 1}), got {len(shares)}")
    if any(s < 0 for s in shares) or sum(shares) <= 0:
        raise ValueError(f"{what} proportions must be non-negative and not all zero")


class NumericFeatureBaseline(Model):
    model_config = ConfigDict(frozen=True, extra="ignore")

    type: Literal["numeric"]
    quantile_edges: list[float]
    bin_proportions: list[float]
    sample: list[float] = Field(default_factory=list)
    mean: float | None = None
    std: float | None = None
    missing_rate: float = Field(default=0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _bins_fit(self) -> NumericFeatureBaseline:
        _check_bins(self.quantile_edges, self.bin_proportions, "quantile")
        _finite(self.sample, "sample")
        return self


class CategoricalFeatureBaseline(Model):
    model_config = ConfigDict(frozen=True, extra="ignore")

    type: Literal["categorical"]
    frequencies: dict[str, float] = Field(min_length=1)
    missing_rate: float = Field(default=0.0, ge=0, le=1)

    @field_validator("frequencies")
    @classmethod
    def _shares(cls, value: dict[str, float]) -> dict[str, float]:
        if any(not math.isfinite(v) or v < 0 for v in value.values()) or sum(value.values()) <= 0:
            raise ValueError("frequencies must be non-negative and not all zero")
        return value


FeatureBaseline = Annotated[NumericFeatureBaseline | CategoricalFeatureBaseline, Field(discriminator="type")]


class PredictionBaseline(Model):
    model_config = ConfigDict(frozen=True, extra="ignore")

    positive_rate: float | None = Field(default=None, ge=0, le=1)
    score_quantile_edges: list[float]
    score_bin_proportions: list[float]
    score_sample: list[float] = Field(default_factory=list)

    @model_validator(mode="after")
    def _bins_fit(self) -> PredictionBaseline:
        _check_bins(self.score_quantile_edges, self.score_bin_proportions, "score")
        _finite(self.score_sample, "score sample")
        return self


class BiasBaseline(Model):
    model_config = ConfigDict(frozen=True, extra="ignore")

    protected_attribute: str = Field(min_length=1)
    advantaged_group: str
    disadvantaged_group: str = Field(min_length=1)
    positive_rates: dict[str, float] = Field(default_factory=dict)
    dppl: float | None = None


class Baseline(Model):
    """`baseline.json` (schema `closedloop.baseline/1`)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    schema_id: Literal["closedloop.baseline/1"] = Field(alias="schema")
    rows: int = Field(ge=1)
    label: str = ""
    protected_attribute: str | None = None
    favourable_label: str = "1"
    feature_order: list[str] = Field(min_length=1)
    features: dict[str, FeatureBaseline]
    prediction: PredictionBaseline | None = None
    bias: BiasBaseline | None = None

    @model_validator(mode="after")
    def _every_feature_described(self) -> Baseline:
        if len(set(self.feature_order)) != len(self.feature_order):
            raise ValueError("feature_order names a feature twice")
        missing = [name for name in self.feature_order if name not in self.features]
        if missing:
            raise ValueError(f"features without statistics: {', '.join(missing[:5])}")
        return self


class ClarifyMetric(Model):
    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    description: str = ""
    value: float | None = None


class ClarifyFacet(Model):
    model_config = ConfigDict(frozen=True, extra="ignore")

    value_or_threshold: str
    metrics: list[ClarifyMetric] = Field(default_factory=list)

    @field_validator("value_or_threshold", mode="before")
    @classmethod
    def _as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int | float) else value


class ClarifyBiasMetrics(Model):
    model_config = ConfigDict(frozen=True, extra="ignore")

    label: str | None = None
    label_value_or_threshold: str | None = None
    facets: dict[str, list[ClarifyFacet]] = Field(default_factory=dict)

    @field_validator("label_value_or_threshold", mode="before")
    @classmethod
    def _as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int | float) else value


class BiasReport(Model):
    """Clarify's analysis format (`bias.json`): the post-training metrics the monitor compares with."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    version: str | None = None
    post_training_bias_metrics: ClarifyBiasMetrics

    def dppl(self, attribute: str, facet_value: str | None = None) -> tuple[str, float] | None:
        """The evaluation's DPPL for `attribute`: (facet value, DPPL), or None when not reported.

        With several facet values of the attribute, `facet_value` picks one (the disadvantaged
        group); with a single one, that one is used.
        """
        facets = self.post_training_bias_metrics.facets.get(attribute, [])
        if facet_value is not None:
            chosen = [f for f in facets if f.value_or_threshold == facet_value]
        else:
            chosen = facets if len(facets) == 1 else []
        for facet in chosen:
            for metric in facet.metrics:
                if metric.name == "DPPL" and metric.value is not None and math.isfinite(metric.value):
                    return facet.value_or_threshold, metric.value
        return None


# -- writing a baseline ---------------------------------------------------------------------------


def spread_sample(sorted_values: Sequence[float], size: int) -> list[float]:
    """At most `size` evenly spaced order statistics of sorted values (all of them if fewer)."""
    n = len(sorted_values)
    if n <= size:
        return list(sorted_values)
    if size == 1:
        return [sorted_values[n // 2]]
    return [sorted_values[round(i * (n - 1) / (size - 1))] for i in range(size)]


def _as_number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _numeric_stats(values: list[float], missing: int, total: int, sample_size: int) -> dict[str, Any]:
    values.sort()
    edges = quantile_edges(values, DEFAULT_BINS)
    mean = sum(values) / len(values)
    variance = sum((v - mean) ** 2 for v in values) / len(values)
    return {
        "type": "numeric",
        "quantile_edges": edges,
        "bin_proportions": proportions(bin_counts(values, edges)),
        "sample": spread_sample(values, sample_size),
        "mean": mean,
        "std": math.sqrt(variance),
        "missing_rate": missing / total,
    }


def build_baseline(
    rows: Sequence[Mapping[str, str]],
    *,
    feature_order: Sequence[str],
    label: str,
    scores: Sequence[float] | None = None,
    protected_attribute: str | None = None,
    favourable_label: str = "1",
    disadvantaged_group: str | None = None,
    categorical: Collection[str] = (),
    sample_size: int = DEFAULT_SAMPLE_SIZE,
) -> dict[str, Any]:
    """A `baseline.json` document for rows of training data (values as CSV text) and model scores.

    A feature is numeric when every non-empty value parses as a finite number, unless it is named
    in `categorical`. Bias figures use predicted labels (`score >= 0.5`) when scores are given,
    else the `label` column; the advantaged group is everyone outside the disadvantaged one
    (Clarify's convention), which by default is the second most frequent group.

    Raises:
        ValueError: no rows, scores that do not match the rows, or a feature with no values.
    """
    if not rows:
        raise ValueError("a baseline needs rows")
    if scores is not None and len(scores) != len(rows):
        raise ValueError("one score per row is needed")
    total = len(rows)
    features: dict[str, Any] = {}
    for name in feature_order:
        texts = [row.get(name, "") for row in rows]
        present = [t for t in texts if t != ""]
        missing = total - len(present)
        if not present:
            raise ValueError(f"feature {name} has no values")
        numbers = None if name in categorical else [_as_number(t) for t in present]
        if numbers is not None and all(n is not None for n in numbers):
            features[name] = _numeric_stats([n for n in numbers if n is not None], missing, total, sample_size)
        else:
            counts: dict[str, int] = {}
            for text in present:
                counts[text] = counts.get(text, 0) + 1
            features[name] = {
                "type": "categorical",
                "frequencies": {k: v / len(present) for k, v in sorted(counts.items())},
                "missing_rate": missing / total,
            }
    document: dict[str, Any] = {
        "schema": SCHEMA,
        "rows": total,
        "label": label,
        "protected_attribute": protected_attribute,
        "favourable_label": favourable_label,
        "feature_order": list(feature_order),
        "features": features,
    }
    if scores is not None:
        ordered = sorted(scores)
        edges = quantile_edges(ordered, DEFAULT_BINS)
        document["prediction"] = {
            "positive_rate": sum(s >= POSITIVE_SCORE for s in scores) / total,
            "score_quantile_edges": edges,
            "score_bin_proportions": proportions(bin_counts(ordered, edges)),
            "score_sample": spread_sample(ordered, sample_size),
        }
    if protected_attribute:
        document["bias"] = _bias_section(
            rows, scores, protected_attribute, label, favourable_label, disadvantaged_group
        )
    return document


def _bias_section(
    rows: Sequence[Mapping[str, str]],
    scores: Sequence[float] | None,
    attribute: str,
    label: str,
    favourable_label: str,
    disadvantaged_group: str | None,
) -> dict[str, Any]:
    sizes: dict[str, int] = {}
    positives: dict[str, int] = {}
    for index, row in enumerate(rows):
        group = row.get(attribute, "")
        if group == "":
            continue
        positive = scores[index] >= POSITIVE_SCORE if scores is not None else row.get(label) == favourable_label
        sizes[group] = sizes.get(group, 0) + 1
        positives[group] = positives.get(group, 0) + int(positive)
    if len(sizes) < 2:
        raise ValueError(f"protected attribute {attribute} needs at least two groups")
    by_size = sorted(sizes, key=lambda g: (-sizes[g], g))
    disadvantaged = disadvantaged_group or by_size[1]
    if disadvantaged not in sizes:
        raise ValueError(f"group {disadvantaged} does not occur in {attribute}")
    advantaged = next(g for g in by_size if g != disadvantaged)
    rest = [g for g in sizes if g != disadvantaged]
    q_a = sum(positives[g] for g in rest) / sum(sizes[g] for g in rest)
    q_d = positives[disadvantaged] / sizes[disadvantaged]
    return {
        "protected_attribute": attribute,
        "advantaged_group": advantaged,
        "disadvantaged_group": disadvantaged,
        "positive_rates": {g: positives[g] / sizes[g] for g in sorted(sizes)},
        "dppl": q_a - q_d,
    }
