#!/usr/bin/env python3
"""Evaluate a trained model on its held-out rows (the pipeline's Evaluate step).

Writes two reports the model package points at (`ModelMetrics`), which the approval gate reads:

* `evaluation.json` (`closedloop.evaluation/1`): AUC, F1, accuracy, precision, recall at the 0.5
  threshold, the majority-class accuracy to beat, and global feature importance (permutation
  importance: the drop in AUC when one feature's values are shuffled, as shares of the total);
* `bias.json`, in SageMaker Clarify's post-training analysis format: disparate impact (DI) and the
  difference in positive proportions of predicted labels (DPPL) for every value of the protected
  attribute against the advantaged (majority) group.

It also writes `lineage.json`, the lineage values the Register step puts into the model package's
`CustomerMetadataProperties` (a pipeline property file): what training recorded in
`model_meta.json` (the pipeline's lineage parameters), any `--lineage name=value` argument, the
dataset and both code versions — made safe for the Model Registry (at most 256 characters of
letters, digits, spaces and `_.:/=+-@`; never empty).

The model is scored through the `inference.py` inside its own archive — the code the endpoint
will run — so evaluation and serving cannot read rows differently.

In a SageMaker Processing job the paths default to `/opt/ml/processing/{model,data,evaluation}`;
locally:

    python pipelines/steps/evaluate.py --model out/model --data prepared/data.csv --output out/evaluation
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import re
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
from sklearn.inspection import permutation_importance

log = logging.getLogger("closedloop.evaluate")

EVALUATION_SCHEMA = "closedloop.evaluation/1"
PROCESSING = "/opt/ml/processing"
METADATA_UNSAFE = re.compile(r"[^\w .:/=+\-@]+")
METADATA_MAX = 256


# --- the model and its own code (the same loader is in baseline.py: each step runs alone) ---------


@dataclass
class TrainedModel:
    """An unpacked model archive with the code it was trained with (`code/common.py`, `code/inference.py`)."""

    directory: str
    common: ModuleType
    serving: ModuleType
    loaded: Any

    @property
    def meta(self) -> dict[str, Any]:
        return dict(self.loaded.meta)


def open_model(path: str, workdir: str) -> TrainedModel:
    """Unpack `model.tar.gz` (a file, or the one in directory `path`) unless `path` is already unpacked.

    Raises:
        SystemExit: no archive, an archive member outside its root, or no model code inside.
    """
    directory = path
    if not os.path.isfile(os.path.join(path, "model_meta.json")):
        archives = (
            [path]
            if os.path.isfile(path)
            else sorted(os.path.join(path, n) for n in os.listdir(path) if n.endswith(".tar.gz"))
        )
        if len(archives) != 1:
            raise SystemExit(f"closedloop step failed: expected one model archive at {path}")
        directory = os.path.join(workdir, "model")
        root = os.path.realpath(directory)
        with tarfile.open(archives[0], "r:gz") as tar:
            for member in tar.getmembers():
                resolved = os.path.realpath(os.path.join(directory, member.name))
                if (resolved != root and not resolved.startswith(root + os.sep)) or member.issym() or member.islnk():
                    raise SystemExit("closedloop step failed: the model archive holds a path outside its root")
            try:
                tar.extractall(directory, filter="data")
            except TypeError:  # Pythons before 3.9.17 have no extraction filters; the members were checked
                tar.extractall(directory)  # noqa: S202
    modules = []
    for name in ("common", "inference"):
        source = os.path.join(directory, "code", f"{name}.py")
        spec = importlib.util.spec_from_file_location(f"closedloop_model_{name}", source)
        if spec is None or spec.loader is None or not os.path.isfile(source):
            raise SystemExit(f"closedloop step failed: the model archive has no code/{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while it loads
        spec.loader.exec_module(module)
        modules.append(module)
    common, serving = modules
    return TrainedModel(directory=directory, common=common, serving=serving, loaded=serving.model_fn(directory))


# --- lineage -------------------------------------------------------------------------------------


def metadata_value(value: str) -> str:
    """A value the Model Registry accepts as customer metadata (pattern and length), never empty."""
    cleaned = " ".join(METADATA_UNSAFE.sub(" ", value or "").split())
    return cleaned[:METADATA_MAX] or "none"


def lineage_document(meta: dict[str, Any], pairs: list[str]) -> dict[str, str]:
    """The model package's lineage values: what training recorded (`model_meta.json`), then any
    `name=value` arguments, the dataset and both code versions — each made registry-safe."""
    values: dict[str, str] = {str(k): str(v) for k, v in (meta.get("lineage") or {}).items()}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit("closedloop step failed: a --lineage argument is not name=value")
        values[name] = value
    prep_code = values.pop("prep_code_version", "")
    values["code_version"] = f"train={meta.get('code_version') or 'unknown'} prep={prep_code or 'unknown'}"
    values["dataset"] = values.get("dataset") or meta.get("dataset") or ""
    return {name: metadata_value(value) for name, value in sorted(values.items())}


# --- evaluation ----------------------------------------------------------------------------------


def feature_importance(
    trained: TrainedModel, header: list[str], rows: list[list[str]], target: np.ndarray, repeats: int, seed: int
) -> dict[str, float]:
    """Permutation importance on the held-out rows: AUC drop per shuffled feature, as shares of the total."""
    model = trained.loaded
    order = model.feature_order
    matrix = trained.serving.to_matrix(trained.common.columns(header, rows, order), order, model.feature_types)
    result = permutation_importance(
        model.estimator, matrix, target, scoring="roc_auc", n_repeats=repeats, random_state=seed
    )
    drops = np.clip(result.importances_mean, 0.0, None)
    total = float(drops.sum())
    shares = drops / total if total > 0 else drops
    return {name: round(float(share), 6) for name, share in sorted(zip(order, shares), key=lambda item: -item[1])}


def bias_report(
    common: ModuleType, meta: dict[str, Any], header: list[str], rows: list[list[str]], predicted: np.ndarray
) -> dict[str, Any]:
    """Clarify's post-training bias format: DI and DPPL of each facet value against the advantaged group."""
    attribute = meta.get("protected_attribute")
    report: dict[str, Any] = {
        "version": "1.0",
        "post_training_bias_metrics": {
            "label": meta["label"],
            "label_value_or_threshold": meta["favourable_label"],
            "facets": {},
        },
    }
    if not attribute:
        return report
    groups = [row[header.index(attribute)] for row in rows]
    advantaged = common.majority_group(groups)
    rates = common.positive_rates(groups, predicted)
    q_a = rates[advantaged]
    facets = []
    for value in sorted(rates):
        if value == advantaged:
            continue
        q_d = rates[value]
        facets.append(
            {
                "value_or_threshold": value,
                "metrics": [
                    {
                        "name": "DI",
                        "description": "Disparate Impact (DI)",
                        "value": common.finite(q_d / q_a) if q_a else None,
                    },
                    {
                        "name": "DPPL",
                        "description": "Difference in Positive Proportions in Predicted Labels (DPPL)",
                        "value": common.finite(q_a - q_d),
                    },
                ],
            }
        )
    report["post_training_bias_metrics"]["facets"][attribute] = facets
    report["advantaged_group"] = advantaged
    report["positive_rates"] = {k: common.finite(v) for k, v in rates.items()}
    report["rows_evaluated"] = len(rows)
    return report


def evaluate(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """Score the held-out rows; write evaluation.json, bias.json and lineage.json; returns the first two."""
    with tempfile.TemporaryDirectory(prefix="closedloop-evaluate-") as workdir:
        trained = open_model(args.model, workdir)
        common, meta = trained.common, trained.meta
        header, _, rows, target = common.split_rows(meta, args.data)
        scores = trained.serving.score(trained.loaded, common.columns(header, rows, meta["feature_order"]))
        predicted = (scores >= common.THRESHOLD).astype(int)
        positive_share = float(target.mean())
        evaluation = {
            "schema": EVALUATION_SCHEMA,
            "dataset": meta.get("dataset") or "",
            "rows_evaluated": len(rows),
            "label": meta["label"],
            "favourable_label": meta["favourable_label"],
            "threshold": common.THRESHOLD,
            "binary_classification_metrics": {
                name: {"value": value} for name, value in common.binary_metrics(target, scores).items()
            },
            "majority_class_accuracy": common.finite(max(positive_share, 1.0 - positive_share)),
            "positive_rate": common.finite(positive_share),
            "predicted_positive_rate": common.finite(float(predicted.mean())),
            "feature_importance": feature_importance(trained, header, rows, target, args.importance_repeats, args.seed),
            "feature_importance_method": "permutation: mean ROC AUC drop over repeats, as shares of the total",
            "model": {
                "algorithm": meta.get("algorithm"),
                "code_version": meta.get("code_version"),
                "rows_trained": meta["split"]["rows_train"],
                "split_key": meta["split"]["key"],
                "versions": meta.get("versions"),
            },
        }
        bias = bias_report(common, meta, header, rows, predicted)
        common.write_json(args.output, "evaluation.json", evaluation)
        common.write_json(args.output, "bias.json", bias)
        common.write_json(args.output, "lineage.json", lineage_document(meta, args.lineage))
    metrics = evaluation["binary_classification_metrics"]
    log.info(
        "evaluated %d held-out rows: auc=%s f1=%s accuracy=%s (majority %s)",
        len(rows),
        metrics["auc"]["value"],
        metrics["f1"]["value"],
        metrics["accuracy"]["value"],
        evaluation["majority_class_accuracy"],
    )
    return evaluation, bias


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=f"{PROCESSING}/model", help="model.tar.gz, its dir, or the unpacked model")
    parser.add_argument("--data", default=f"{PROCESSING}/data", help="prepared data.csv (or its directory)")
    parser.add_argument("--output", default=f"{PROCESSING}/evaluation")
    parser.add_argument("--importance-repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--lineage", action="append", default=[], metavar="NAME=VALUE", help="a lineage value for the model package"
    )
    args, _ = parser.parse_known_args(argv)
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    evaluation, _ = evaluate(parse_args(argv))
    print(json.dumps({"rows_evaluated": evaluation["rows_evaluated"], **evaluation["binary_classification_metrics"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
