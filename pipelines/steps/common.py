"""What the training pipeline's step scripts share: the data, its roles, the split, the metrics.

The Train step imports it from next to itself and copies it into the model archive
(`code/common.py`, beside `code/inference.py`); the Evaluate and Baseline steps import it from the
model they are given. So the held-out split and the row parsing they use are, by construction, the
ones the model was trained with — even when the step scripts change between two versions.

Every step script runs unchanged in its SageMaker container (the scikit-learn 1.4 framework image:
Python 3.9+, numpy, scikit-learn, joblib) and locally, so this module needs only those and the
standard library. Nothing here logs or writes a data value: reports carry counts, names and
statistics.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

MODEL_FILE = "model.joblib"
META_FILE = "model_meta.json"
META_SCHEMA = "closedloop.model/1"
FEATURE_TYPES = ("numeric", "categorical")
MIN_SPLIT_GROUPS = 20
THRESHOLD = 0.5


class StepError(SystemExit):
    """A step cannot produce trustworthy output; the message says why (it never holds a data value)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"closedloop step failed: {message}")
        self.message = message


# --- input files ---------------------------------------------------------------------------------


def single_file(path: str, suffix: str) -> str:
    """`path` itself, or the one `*<suffix>` file in the directory `path` (a SageMaker channel)."""
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise StepError(f"{path} does not exist")
    found = sorted(
        os.path.join(root, name) for root, _, names in os.walk(path) for name in names if name.endswith(suffix)
    )
    if len(found) != 1:
        raise StepError(f"expected one *{suffix} file under {path}, found {len(found)}")
    return found[0]


def csv_parts(path: str) -> list[str]:
    """`path` itself, or every `*.csv` under the directory `path` in name order: the single-node
    engine writes one `data.csv`, the Spark engine one `part-<index>.csv` per raw file."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise StepError(f"{path} does not exist")
    found = sorted(
        os.path.join(root, name) for root, _, names in os.walk(path) for name in names if name.endswith(".csv")
    )
    if not found:
        raise StepError(f"expected *.csv files under {path}, found none")
    return found


def read_table(path: str) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the prepared CSV at `path` (a file, or a channel of one or more parts,
    each with the same header)."""
    header: list[str] = []
    rows = []
    for number, part in enumerate(csv_parts(path), start=1):
        with open(part, encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            found = next(reader, None)
            if not found:
                raise StepError(f"part {number} of the prepared data has no header")
            if not header:
                header = found
            elif found != header:
                raise StepError(f"part {number} of the prepared data has another header than part 1")
            for line, values in enumerate(reader, start=2):
                if not values:
                    continue
                if len(values) != len(header):
                    where = f"part {number} line {line}" if number > 1 else f"line {line}"
                    raise StepError(f"{where} has {len(values)} fields, the header {len(header)}")
                rows.append(values)
    return header, rows


def read_json(path: str, name: str) -> dict[str, Any]:
    """A JSON document: the file `path`, or the file called `name` in the directory `path`."""
    target = os.path.join(path, name) if os.path.isdir(path) else path
    if not os.path.isfile(target):
        target = single_file(path, ".json")
    with open(target, encoding="utf-8") as handle:
        document: dict[str, Any] = json.load(handle)
    return document


def write_json(directory: str, name: str, document: dict[str, Any]) -> str:
    """Write a JSON document into `directory` (created if needed); returns its path."""
    os.makedirs(directory, exist_ok=True)
    target = os.path.join(directory, name)
    with open(target, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=1, sort_keys=True, allow_nan=False)
        handle.write("\n")
    return target


# --- the roles of the columns --------------------------------------------------------------------


@dataclass
class Schema:
    """Which prepared columns the model learns from, and which it must not.

    Features are the columns the dataset policy types as `numeric` or `categorical`, except the
    label and the protected attribute: identifiers, free text and masked values never are, and the
    protected attribute is kept only to measure bias (fairness through unawareness, measured).
    """

    dataset: str
    label: str
    protected_attribute: str | None
    favourable_label: str
    feature_order: list[str]
    feature_types: dict[str, str]
    identifiers: list[str] = field(default_factory=list)
    excluded: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def schema_from_manifest(manifest: dict[str, Any], header: Sequence[str]) -> Schema:
    """Derive the column roles from the prepared manifest (`output.column_types`, label, attribute).

    Raises:
        StepError: the manifest lacks the label, or the data lacks a column the manifest declares.
    """
    output = manifest.get("output") or {}
    types: dict[str, str] = dict(output.get("column_types") or {})
    label = output.get("label")
    protected = output.get("protected_attribute") or None
    if not label:
        raise StepError("the prepared manifest declares no label")
    missing = [name for name in [label, protected, *types] if name and name not in header]
    if missing:
        raise StepError(f"the prepared data lacks declared columns: {sorted(set(missing))}")
    features: list[str] = []
    excluded: dict[str, str] = {}
    for name in header:
        kind = types.get(name, "undeclared")
        if name == label:
            continue
        if name == protected:
            excluded[name] = "protected attribute"
        elif kind in FEATURE_TYPES:
            features.append(name)
        else:
            excluded[name] = kind
    if not features:
        raise StepError("the dataset policy leaves no numeric or categorical feature")
    return Schema(
        dataset=str(manifest.get("dataset") or ""),
        label=label,
        protected_attribute=protected,
        favourable_label=str(output.get("favourable_label") or "1"),
        feature_order=features,
        feature_types={name: types[name] for name in features},
        identifiers=[name for name in header if types.get(name) == "identifier"],
        excluded=excluded,
    )


# --- the held-out split --------------------------------------------------------------------------


def choose_split_key(header: Sequence[str], rows: Sequence[Sequence[str]], identifiers: Sequence[str]) -> str:
    """The identifier to split by: the coarsest one with at least `MIN_SPLIT_GROUPS` values.

    Splitting by the coarsest identifier (a customer rather than an application) keeps all rows of
    one entity on one side, so the held-out score is not flattered by near-duplicates. With no
    usable identifier the row's own content is the key ("").
    """
    best, best_count = "", 0
    for name in identifiers:
        index = list(header).index(name)
        distinct = len({row[index] for row in rows if row[index]})
        if distinct >= MIN_SPLIT_GROUPS and (not best or distinct < best_count):
            best, best_count = name, distinct
    return best


def holdout_mask(
    header: Sequence[str], rows: Sequence[Sequence[str]], key: str, salt: str, fraction: float
) -> np.ndarray:
    """Which rows are held out: a keyed hash of the split key, so every step recomputes the same split."""
    if not 0 < fraction < 1:
        raise StepError("the held-out fraction must lie strictly between 0 and 1")
    index = list(header).index(key) if key else -1
    cut = int(fraction * 10_000)
    held = []
    for row in rows:
        value = row[index] if index >= 0 else "\x1f".join(row)
        digest = hashlib.sha256(f"{salt}\x1f{value}".encode()).digest()
        held.append(int.from_bytes(digest[:4], "big") % 10_000 < cut)
    return np.array(held, dtype=bool)


def labelled_rows(
    header: Sequence[str], rows: Sequence[list[str]], label: str, favourable: str
) -> tuple[list[list[str]], np.ndarray, int]:
    """Rows with a label, their binary targets (1 = favourable) and how many had none."""
    index = list(header).index(label)
    kept = [row for row in rows if row[index].strip()]
    target = np.array([1 if row[index].strip() == favourable else 0 for row in kept], dtype=int)
    return kept, target, len(rows) - len(kept)


def columns(header: Sequence[str], rows: Sequence[Sequence[str]], names: Iterable[str]) -> list[list[str]]:
    """The values of `names`, in that order, for every row (the model's input order)."""
    indexes = [list(header).index(name) for name in names]
    return [[row[i] for i in indexes] for row in rows]


def split_rows(meta: dict[str, Any], data: str) -> tuple[list[str], list[list[str]], list[list[str]], np.ndarray]:
    """Header, training rows, held-out rows and held-out targets, recomputed from the split in `meta`.

    Raises:
        StepError: the split does not give the row counts training recorded (not the model's data).
    """
    header, rows = read_table(data)
    rows, target, _ = labelled_rows(header, rows, meta["label"], meta["favourable_label"])
    split = meta["split"]
    mask = holdout_mask(header, rows, split["key"], split["salt"], split["test_fraction"])
    if int(mask.sum()) != split["rows_test"] or int((~mask).sum()) != split["rows_train"]:
        raise StepError(
            f"the data splits into {int((~mask).sum())}/{int(mask.sum())} rows, training recorded "
            f"{split['rows_train']}/{split['rows_test']}: this is not the data the model was trained on"
        )
    training = [row for row, held in zip(rows, mask) if not held]
    held_out = [row for row, held in zip(rows, mask) if held]
    return header, training, held_out, target[mask]


# --- metrics -------------------------------------------------------------------------------------


def finite(value: float | None, digits: int = 6) -> float | None:
    """A JSON-safe rounded number (None for NaN or infinity, which JSON cannot hold)."""
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


def binary_metrics(target: np.ndarray, scores: np.ndarray) -> dict[str, float | None]:
    """AUC, F1, accuracy, precision and recall of scores thresholded at 0.5."""
    predicted = (scores >= THRESHOLD).astype(int)
    auc = roc_auc_score(target, scores) if len(set(target.tolist())) == 2 else None
    return {
        "auc": finite(auc),
        "f1": finite(f1_score(target, predicted, zero_division=0)),
        "accuracy": finite(accuracy_score(target, predicted)),
        "precision": finite(precision_score(target, predicted, zero_division=0)),
        "recall": finite(recall_score(target, predicted, zero_division=0)),
    }


def majority_group(groups: Sequence[str]) -> str:
    """The advantaged group by the contract's definition: the group with the most rows (ties: by name)."""
    counts: dict[str, int] = {}
    for value in groups:
        counts[value] = counts.get(value, 0) + 1
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[0][0]


def positive_rates(groups: Sequence[str], predicted: np.ndarray) -> dict[str, float]:
    """Share of favourable predicted labels per group."""
    rates: dict[str, float] = {}
    values = np.array(list(groups), dtype=object)
    for group in sorted(set(values.tolist())):
        members = values == group
        rates[str(group)] = float(predicted[members].mean())
    return rates


def quantile_edges(values: np.ndarray, bins: int = 10) -> list[float]:
    """`bins + 1` edges: the minimum, the inner quantiles and the maximum."""
    return [float(v) for v in np.quantile(values, np.linspace(0.0, 1.0, bins + 1))]


def bin_proportions(values: np.ndarray, edges: Sequence[float]) -> list[float]:
    """Share of values per bin; bin i holds the values with exactly i inner edges at or below them.

    That rule puts a value below the minimum in the first bin and one above the maximum in the
    last, and leaves a bin between two equal edges empty — the drift monitor bins live data the same way.
    """
    inner = np.asarray(edges[1:-1], dtype=float)
    index = np.searchsorted(inner, values, side="right")
    counts = np.bincount(index, minlength=len(edges) - 1).astype(float)
    return [float(c) for c in counts / max(len(values), 1)]


def sorted_sample(values: np.ndarray, size: int, seed: int) -> list[float]:
    """At most `size` values drawn without replacement (seeded), sorted: enough for a KS test."""
    if len(values) > size:
        values = np.random.default_rng(seed).choice(values, size=size, replace=False)
    return [float(v) for v in np.sort(values)]
