"""Feature attribution drift, as SageMaker Clarify's explainability monitor measures it (pure; no I/O).

Clarify writes global SHAP values per feature in its `analysis.json`
(`explanations.kernel_shap.<label>.global_shap_values`). The monitor compares the *ranking* of the
features by their attribution on live traffic with the ranking in the baseline, by the normalised
discounted cumulative gain (SageMaker Developer Guide, "Monitor Feature Attribution Drift for Models
in Production" and "Model Feature Attribution Drift Violations"):

    F  = [f1 … fm]    the features sorted by their baseline attribution, largest first
    F' = [f'1 … f'm]  the same features sorted by their attribution on live traffic
    a(f)              the feature's attribution in the baseline (its relevance)

    DCG  = Σ_i a(f'_i) / log2(i + 1)
    iDCG = Σ_i a(f_i)  / log2(i + 1)
    nDCG = DCG / iDCG

1 means the live ranking is the baseline's; a feature that was important in the baseline and falls
down the live ranking costs more than an unimportant one moving by the same number of places.
SageMaker logs a violation when nDCG < 0.9 (`DEFAULT_THRESHOLD`). The documentation's example
(college admissions: SAT 0.70, GPA 0.50, class rank 0.05 in training; live ranking class rank, GPA,
SAT) gives 0.69.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

DEFAULT_THRESHOLD = 0.9  # SageMaker's: "If the score is less than 0.9, then a violation is logged"
SHAP_LABEL = "label0"  # Clarify's name for the single score of a model without label headers


def ranked(attributions: Mapping[str, float]) -> list[str]:
    """Feature names by attribution, largest first (ties by name, so the order is deterministic)."""
    return sorted(attributions, key=lambda name: (-attributions[name], name))


def ndcg(baseline: Mapping[str, float], current: Mapping[str, float], *, top: int | None = None) -> float | None:
    """nDCG of the live attribution ranking against the baseline's (relevance = baseline attribution).

    Args:
        baseline: the baseline's global attribution per feature (magnitudes; signs are dropped).
        current: the live traffic's global attribution per feature; a baseline feature it lacks
            ranks last (attribution 0), a feature the baseline lacks has relevance 0.
        top: rank only the first `top` positions (all the baseline's features by default).

    Returns:
        nDCG in [0, 1]; None when the baseline attributes nothing (iDCG = 0: undefined).
    """
    relevance = {name: abs(value) for name, value in baseline.items() if math.isfinite(value)}
    live = {name: abs(value) if math.isfinite(value) else 0.0 for name, value in current.items()}
    for name in relevance:
        live.setdefault(name, 0.0)
    positions = len(relevance) if top is None else min(top, len(relevance))
    ideal = ranked(relevance)[:positions]
    observed = ranked(live)[:positions]
    idcg = sum(relevance[name] / math.log2(i + 2) for i, name in enumerate(ideal))
    if idcg <= 0:
        return None
    dcg = sum(relevance.get(name, 0.0) / math.log2(i + 2) for i, name in enumerate(observed))
    return dcg / idcg


def global_shap_values(document: Any, label: str = SHAP_LABEL) -> dict[str, float]:
    """The global SHAP value per feature of a Clarify `analysis.json` (its `label`, else its only one).

    Raises:
        ValueError: no `explanations.kernel_shap`, no such label, or no feature with a finite number.
    """
    explanations = document.get("explanations") if isinstance(document, dict) else None
    kernel = explanations.get("kernel_shap") if isinstance(explanations, dict) else None
    if not isinstance(kernel, dict) or not kernel:
        raise ValueError("no explanations.kernel_shap")
    entry = kernel.get(label) if label in kernel else (kernel[next(iter(kernel))] if len(kernel) == 1 else None)
    if not isinstance(entry, dict):
        raise ValueError(f"no explanations.kernel_shap.{label}")
    values = entry.get("global_shap_values")
    if not isinstance(values, dict):
        raise ValueError("no global_shap_values")
    found = {
        str(name): float(value)
        for name, value in values.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }
    if not found:
        raise ValueError("global_shap_values lists no feature with a number")
    return found
