"""The tests' fixed model as serving code, in the place a model archive keeps it (`code/inference.py`).

The pipeline's Baseline step loads the model's own `code/inference.py` and scores the held-out rows
with its `model_fn` and `score`. `support.capture.pipeline_baseline` puts this file there, so the
step scores with `support.capture.score` (a fixed logistic model of the loans features) where a
trained archive has a fitted estimator. Metadata with `fixed_score` gives every row that score
(data without the loans features).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

META_FILE = "model_meta.json"


class FixedModel:
    """What `model_fn` returns: the model's metadata, as the Baseline step reads it (`.meta`)."""

    def __init__(self, meta: dict[str, Any]) -> None:
        self.meta = meta


def model_fn(model_dir: str) -> FixedModel:
    """The model in `model_dir` (only its `model_meta.json`: the scores are fixed)."""
    with open(os.path.join(model_dir, META_FILE), encoding="utf-8") as handle:
        return FixedModel(json.load(handle))


def score(model: FixedModel, rows: Sequence[Sequence[str]]) -> np.ndarray:
    """Probability of the favourable label for each row of feature columns in `feature_order`."""
    fixed = model.meta.get("fixed_score")
    if fixed is not None:
        return np.full(len(rows), float(fixed))
    from support.capture import score as approval  # loaded by the step after support.capture itself

    order = model.meta["feature_order"]
    return np.array([approval(dict(zip(order, row, strict=True))) for row in rows], dtype=float)
