#!/usr/bin/env python3
"""Write the drift baseline of a trained model (the pipeline's Baseline step): `baseline.json`.

The model package points at it (`DriftCheckBaselines.ModelDataQuality.Statistics`); the drift
monitor compares endpoint data capture with it. Format `closedloop.baseline/1`:

* per feature, over the rows the model was trained on: numeric — 11 quantile edges (minimum,
  deciles, maximum), the share of rows per bin, up to 1,000 sorted sample values (for KS), mean,
  standard deviation and missing rate; categorical — the share of each category and the missing rate;
* predictions, over the held-out rows (out-of-sample scores are what live traffic will look like):
  positive rate, score quantile edges and bin shares, a sorted score sample;
* bias: positive rates of predicted labels per group of the protected attribute and the DPPL of
  the advantaged (majority) group against the group with the lowest rate.

Binning rule (the drift monitor must use the same): a value falls in bin i when exactly i of the
inner edges (edges 1 to 9) are at or below it.

In a SageMaker Processing job the paths default to `/opt/ml/processing/{model,data,baseline}`;
locally:

    python pipelines/steps/baseline.py --model out/model --data prepared/data.csv --output out/baseline
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

log = logging.getLogger("closedloop.baseline")

BASELINE_SCHEMA = "closedloop.baseline/1"
PROCESSING = "/opt/ml/processing"


# --- the model and its own code (the same loader is in evaluate.py: each step runs alone) ---------


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


# --- statistics ----------------------------------------------------------------------------------


def numeric_summary(common: ModuleType, values: list[str], sample_size: int, seed: int) -> dict[str, Any]:
    """Quantile bins, a sample, mean/std and missing rate of one numeric column."""
    present = np.array([float(v) for v in values if v.strip()], dtype=float)
    summary: dict[str, Any] = {"type": "numeric", "missing_rate": common.finite(1 - len(present) / max(len(values), 1))}
    if len(present) == 0:
        return {**summary, "quantile_edges": [], "bin_proportions": [], "sample": [], "mean": None, "std": None}
    edges = common.quantile_edges(present)
    return {
        **summary,
        "quantile_edges": [common.finite(e) for e in edges],
        "bin_proportions": [common.finite(p) for p in common.bin_proportions(present, edges)],
        "sample": common.sorted_sample(present, sample_size, seed),
        "mean": common.finite(float(present.mean())),
        "std": common.finite(float(present.std())),
    }


def categorical_summary(common: ModuleType, values: list[str]) -> dict[str, Any]:
    """Share of each category (over the rows that have one) and the missing rate."""
    present = [v.strip() for v in values if v.strip()]
    counts: dict[str, int] = {}
    for value in present:
        counts[value] = counts.get(value, 0) + 1
    return {
        "type": "categorical",
        "frequencies": {k: common.finite(n / len(present)) for k, n in sorted(counts.items())} if present else {},
        "missing_rate": common.finite(1 - len(present) / max(len(values), 1)),
    }


def bias_baseline(
    common: ModuleType, meta: dict[str, Any], header: list[str], rows: list[list[str]], predicted: np.ndarray
) -> dict[str, Any] | None:
    """Positive rates per group and the DPPL between the advantaged and the least favoured group."""
    attribute = meta.get("protected_attribute")
    if not attribute:
        return None
    groups = [row[header.index(attribute)] for row in rows]
    rates = common.positive_rates(groups, predicted)
    advantaged = common.majority_group(groups)
    others = sorted((rate, group) for group, rate in rates.items() if group != advantaged)
    disadvantaged = others[0][1] if others else advantaged
    return {
        "protected_attribute": attribute,
        "advantaged_group": advantaged,
        "disadvantaged_group": disadvantaged,
        "positive_rates": {k: common.finite(v) for k, v in rates.items()},
        "dppl": common.finite(rates[advantaged] - rates[disadvantaged]),
    }


def baseline(args: argparse.Namespace) -> dict[str, Any]:
    """Compute and write baseline.json; returns the document."""
    with tempfile.TemporaryDirectory(prefix="closedloop-baseline-") as workdir:
        trained = open_model(args.model, workdir)
        common, meta = trained.common, trained.meta
        header, training, test_rows, _ = common.split_rows(meta, args.data)
        order, types = meta["feature_order"], meta["feature_types"]
        features: dict[str, Any] = {}
        for index, name in enumerate(order):
            column = header.index(name)
            values = [row[column] for row in training]
            features[name] = (
                numeric_summary(common, values, args.sample_size, args.seed + index)
                if types[name] == "numeric"
                else categorical_summary(common, values)
            )
        scores = trained.serving.score(trained.loaded, common.columns(header, test_rows, order))
        predicted = (scores >= common.THRESHOLD).astype(int)
        score_edges = common.quantile_edges(scores)
        document: dict[str, Any] = {
            "schema": BASELINE_SCHEMA,
            "dataset": meta.get("dataset") or "",
            "rows": len(training),
            "label": meta["label"],
            "protected_attribute": meta.get("protected_attribute"),
            "favourable_label": meta["favourable_label"],
            "threshold": common.THRESHOLD,
            "binning": "bin i holds the values with exactly i inner edges (edges[1:-1]) at or below them",
            "feature_order": list(order),
            "features": features,
            "prediction": {
                "rows": len(test_rows),
                "positive_rate": common.finite(float(predicted.mean())),
                "score_quantile_edges": [common.finite(e) for e in score_edges],
                "score_bin_proportions": [common.finite(p) for p in common.bin_proportions(scores, score_edges)],
                "score_sample": common.sorted_sample(scores, args.sample_size, args.seed),
            },
            "bias": bias_baseline(common, meta, header, test_rows, predicted),
        }
        common.write_json(args.output, "baseline.json", document)
    log.info("baseline of %d features over %d rows, predictions over %d", len(features), len(training), len(test_rows))
    return document


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=f"{PROCESSING}/model", help="model.tar.gz, its dir, or the unpacked model")
    parser.add_argument("--data", default=f"{PROCESSING}/data", help="prepared data.csv (or its directory)")
    parser.add_argument("--output", default=f"{PROCESSING}/baseline")
    parser.add_argument("--sample-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    args, _ = parser.parse_known_args(argv)
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    document = baseline(parse_args(argv))
    print(json.dumps({"rows": document["rows"], "features": len(document["features"])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
