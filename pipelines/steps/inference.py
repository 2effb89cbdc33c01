"""The model's serving code, run by SageMaker's scikit-learn container behind the endpoint.

The training step copies this file into the model archive (`code/inference.py`) and the model
package points the container at it (`SAGEMAKER_PROGRAM=inference.py`,
`SAGEMAKER_SUBMIT_DIRECTORY=/opt/ml/model/code`), so the code that serves a model version is the
code it was trained and evaluated with. The container calls `model_fn` once, then per request
`input_fn` → `predict_fn` → `output_fn`.

Request: `text/csv`, no header, one row per line with the model's `feature_order` columns in that
order, optionally followed by ONE extra column holding the protected attribute (ignored here; it
travels so the drift monitor can measure bias in data capture).
Response: `text/csv`, one line per row: the probability of the favourable label. The predicted
label is `score >= 0.5`.

Only the standard library, numpy, scikit-learn and joblib are needed (Python 3.9+).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from typing import Any

import joblib
import numpy as np

MODEL_FILE = "model.joblib"
META_FILE = "model_meta.json"
CSV_CONTENT_TYPE = "text/csv"
MAX_ROWS = 10_000


class LoadedModel:
    """The fitted estimator and what it needs to read a request (from `model_meta.json`)."""

    def __init__(self, estimator: Any, meta: dict[str, Any]) -> None:
        self.estimator = estimator
        self.meta = meta
        self.feature_order: list[str] = list(meta["feature_order"])
        self.feature_types: dict[str, str] = dict(meta["feature_types"])
        classes = [int(c) for c in getattr(estimator, "classes_", [0, 1])]
        self.positive_index = classes.index(1)


def to_matrix(rows: Sequence[Sequence[str]], feature_order: Sequence[str], feature_types: dict[str, str]) -> np.ndarray:
    """The model's input: one object row per request row, numbers as floats (NaN when empty), categories as text.

    Raises:
        ValueError: a numeric column holds something that is not a number (names the row and column only).
    """
    matrix = np.empty((len(rows), len(feature_order)), dtype=object)
    numeric = [feature_types[name] == "numeric" for name in feature_order]
    for r, row in enumerate(rows):
        for c, value in enumerate(row[: len(feature_order)]):
            text = value.strip()
            if not numeric[c]:
                matrix[r, c] = text
                continue
            if not text:
                matrix[r, c] = math.nan
                continue
            try:
                number = float(text)
            except ValueError:
                raise ValueError(f"row {r + 1}: column {feature_order[c]!r} is not a number") from None
            if math.isinf(number):
                raise ValueError(f"row {r + 1}: column {feature_order[c]!r} is infinite")
            matrix[r, c] = number
    return matrix


def score(model: LoadedModel, rows: Sequence[Sequence[str]]) -> np.ndarray:
    """Probability of the favourable label for each row (rows: feature columns, maybe plus one extra).

    Raises:
        ValueError: a row has the wrong number of fields, or a numeric field is not a number.
    """
    width = len(model.feature_order)
    for r, row in enumerate(rows):
        if len(row) not in (width, width + 1):
            raise ValueError(f"row {r + 1} has {len(row)} fields; expected {width} (or {width + 1} with the group)")
    matrix = to_matrix(rows, model.feature_order, model.feature_types)
    probabilities = model.estimator.predict_proba(matrix)
    return np.asarray(probabilities[:, model.positive_index], dtype=float)


# --- the SageMaker scikit-learn container's hooks ----------------------------------------------


def model_fn(model_dir: str) -> LoadedModel:
    """Load the fitted estimator and its metadata from the unpacked model archive."""
    with open(os.path.join(model_dir, META_FILE), encoding="utf-8") as handle:
        meta = json.load(handle)
    return LoadedModel(joblib.load(os.path.join(model_dir, MODEL_FILE)), meta)


def input_fn(request_body: str | bytes, request_content_type: str) -> list[list[str]]:
    """Parse a `text/csv` request into rows of fields (no header).

    Raises:
        ValueError: another content type, an empty body, or more than `MAX_ROWS` rows.
    """
    if (request_content_type or "").split(";")[0].strip().lower() != CSV_CONTENT_TYPE:
        raise ValueError(f"unsupported content type {request_content_type!r}; send {CSV_CONTENT_TYPE}")
    text = request_body.decode("utf-8") if isinstance(request_body, (bytes, bytearray)) else request_body
    rows = [row for row in csv.reader(io.StringIO(text)) if row]
    if not rows:
        raise ValueError("the request holds no rows")
    if len(rows) > MAX_ROWS:
        raise ValueError(f"the request holds {len(rows)} rows; at most {MAX_ROWS} per request")
    return rows


def predict_fn(input_data: list[list[str]], model: LoadedModel) -> np.ndarray:
    """Score the parsed rows."""
    return score(model, input_data)


def output_fn(prediction: np.ndarray, accept: str) -> tuple[str, str]:
    """One probability per line, as `text/csv` (the container sends the tuple's body with its content type).

    Raises:
        ValueError: the caller accepts neither `text/csv` nor anything.
    """
    wanted = (accept or "*/*").split(";")[0].strip().lower()
    if wanted not in (CSV_CONTENT_TYPE, "*/*", "text/*"):
        raise ValueError(f"unsupported accept type {accept!r}; this model answers {CSV_CONTENT_TYPE}")
    body = "\n".join(f"{float(value):.6f}" for value in prediction)
    return body, CSV_CONTENT_TYPE
