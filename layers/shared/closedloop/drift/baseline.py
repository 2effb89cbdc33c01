"""The drift monitor's inputs from the pipeline: `baseline.json` and Clarify's `bias.json`.

`baseline.json` is the model package's `DriftCheckBaselines.ModelDataQuality.Statistics`: per
feature the quantile bins (numeric) or category frequencies (categorical) of the training rows, a
sorted sample for KS, the same for the model's scores on the held-out rows, and the positive rates
of the protected groups. The training pipeline's Baseline step (`pipelines/steps/baseline.py`) is
its only writer; this module reads and validates it, and the monitor bins live data by the rule of
`closedloop.drift.stats`, the one the step documents.
`bias.json` is `ModelMetrics.Bias.PostTrainingReport`, in SageMaker Clarify's analysis format; the
monitor reads the evaluation's DPPL from it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from closedloop.model import Model

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
