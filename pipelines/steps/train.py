#!/usr/bin/env python3
"""Train the approval model on one prepared dataset (the pipeline's Train step).

In the SageMaker training container (scikit-learn 1.4 image, run by the SDK's script driver) the
inputs come from the channels and the hyperparameters arrive as `--name value` arguments:

    SM_CHANNEL_TRAIN     the prepared data (`data.csv` of a preparation run)
    SM_CHANNEL_MANIFEST  its `manifest.json` (column types, label, protected attribute)
    SM_MODEL_DIR         where the model goes (SageMaker uploads it as `model.tar.gz`)

Locally the same script takes explicit paths:

    python pipelines/steps/train.py --train prepared/data.csv --manifest prepared/manifest.json --model-dir out/model

The model is a scikit-learn pipeline that encodes categories itself (callers send raw values), so
`model.joblib`, `model_meta.json` (features, split, versions) and `code/inference.py` are all an
endpoint needs. A held-out share of the rows, chosen by a keyed hash of the split key, is never
trained on: the Evaluate and Baseline steps recompute the same split from `model_meta.json` with
the model's own copy of `common.py` (`code/common.py`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import shutil
import sys
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common
import inference

log = logging.getLogger("closedloop.train")

SPLIT_SALT = "closedloop-holdout/1"
MODEL_CODE = ("inference.py", "common.py")  # shipped in the model: serving, and the split and parsing
# Lineage the pipeline passes as hyperparameters (values up to 2,500 characters; a Processing job's
# arguments allow only 256), each prefixed with "=" so a value can never be mistaken for an option.
LINEAGE = ("prepared-manifest", "prepared-data", "prep-run-id", "prep-code-version", "trigger", "trigger-reason")


def code_version(directory: str | None = None) -> str:
    """SHA-256 over the step scripts (`*.py` of this directory: name and content, sorted).

    `pipelines/definition.py` computes the same hash for the version's `CommitId`; the training
    container has exactly these files (they are the `sourcedir.tar.gz`).
    """
    directory = directory or os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha256()
    for name in sorted(n for n in os.listdir(directory) if n.endswith(".py")):
        with open(os.path.join(directory, name), "rb") as handle:
            digest.update(name.encode() + b"\0" + handle.read() + b"\0")
    return digest.hexdigest()


def build_estimator(schema: common.Schema, args: argparse.Namespace) -> Any:
    """Encoding and classifier in one scikit-learn pipeline (APIs present from scikit-learn 1.4 on)."""
    numeric = [i for i, name in enumerate(schema.feature_order) if schema.feature_types[name] == "numeric"]
    categorical = [i for i, name in enumerate(schema.feature_order) if schema.feature_types[name] == "categorical"]
    transformers: list[Any] = []
    if numeric:
        transformers.append(
            ("numeric", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), numeric)
        )
    if categorical:
        transformers.append(("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical))
    if args.algorithm == "gbm":
        classifier: Any = HistGradientBoostingClassifier(
            max_iter=args.max_iter, learning_rate=args.learning_rate, max_depth=3, random_state=args.seed
        )
    else:
        classifier = LogisticRegression(C=args.c, max_iter=args.max_iter)
    return Pipeline([("encode", ColumnTransformer(transformers, remainder="drop")), ("classify", classifier)])


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Fit the model and write the model directory; returns its metadata.

    Raises:
        StepError: the data or manifest cannot give a trustworthy model (too few rows, one class…).
    """
    manifest = common.read_json(args.manifest, "manifest.json")
    header, rows = common.read_table(args.train)
    schema = common.schema_from_manifest(manifest, header)
    rows, target, unlabelled = common.labelled_rows(header, rows, schema.label, schema.favourable_label)
    split_key = args.split_key
    if split_key == "auto":
        split_key = common.choose_split_key(header, rows, schema.identifiers)
    if split_key and split_key not in header:
        raise common.StepError(f"split key {split_key!r} is not a column of the prepared data")
    held_out = common.holdout_mask(header, rows, split_key, SPLIT_SALT, args.test_fraction)
    train_rows = [row for row, held in zip(rows, held_out) if not held]
    train_target = target[~held_out]
    if len(train_rows) < args.min_rows:
        raise common.StepError(f"{len(train_rows)} training rows; at least {args.min_rows} are needed")
    for name, part in (("training", train_target), ("held-out", target[held_out])):
        if len(set(part.tolist())) < 2:
            raise common.StepError(f"the {name} rows hold only one class of {schema.label!r}")
    matrix = inference.to_matrix(
        common.columns(header, train_rows, schema.feature_order), schema.feature_order, schema.feature_types
    )
    estimator = build_estimator(schema, args)
    estimator.fit(matrix, train_target)

    os.makedirs(args.model_dir, exist_ok=True)
    joblib.dump(estimator, os.path.join(args.model_dir, common.MODEL_FILE))
    code_dir = os.path.join(args.model_dir, "code")
    os.makedirs(code_dir, exist_ok=True)
    here = os.path.dirname(os.path.abspath(__file__))
    for name in MODEL_CODE:
        shutil.copyfile(os.path.join(here, name), os.path.join(code_dir, name))
    meta = {
        "schema": common.META_SCHEMA,
        **schema.to_dict(),
        "threshold": common.THRESHOLD,
        "algorithm": args.algorithm,
        "hyperparameters": {
            "c": args.c,
            "max_iter": args.max_iter,
            "learning_rate": args.learning_rate,
            "seed": args.seed,
        },
        "split": {
            "key": split_key,
            "salt": SPLIT_SALT,
            "test_fraction": args.test_fraction,
            "rows_train": len(train_rows),
            "rows_test": int(held_out.sum()),
            "rows_unlabelled": unlabelled,
        },
        "training": {"rows": len(train_rows), "positive_rate": common.finite(float(train_target.mean()))},
        "prepared": {
            "run_id": manifest.get("run_id"),
            "dataset": manifest.get("dataset"),
            "policy": manifest.get("policy"),
            "prep_code_sha256": (manifest.get("code") or {}).get("sha256"),
        },
        "code_version": code_version(),
        "lineage": {
            name.replace("-", "_"): getattr(args, f"lineage_{name.replace('-', '_')}").removeprefix("=")
            for name in LINEAGE
        },
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scikit-learn": sklearn.__version__,
        },
    }
    common.write_json(args.model_dir, common.META_FILE, meta)
    log.info(
        "trained %s on %d rows (%d held out, %d unlabelled) with %d features",
        args.algorithm,
        len(train_rows),
        int(held_out.sum()),
        unlabelled,
        len(schema.feature_order),
    )
    return meta


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default=os.environ.get("SM_CHANNEL_TRAIN"), help="prepared data.csv or its dir")
    parser.add_argument("--manifest", default=os.environ.get("SM_CHANNEL_MANIFEST"), help="prepared manifest.json")
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    parser.add_argument("--algorithm", choices=("logistic", "gbm"), default="logistic")
    parser.add_argument("--c", type=float, default=1.0, help="inverse regularisation strength (logistic)")
    parser.add_argument("--max-iter", type=int, default=1000)
    parser.add_argument("--learning-rate", type=float, default=0.05, help="gbm only")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--test-fraction", type=float, default=0.25)
    parser.add_argument("--split-key", default="auto", help="column to split by; 'auto' picks the coarsest identifier")
    parser.add_argument("--min-rows", type=int, default=100)
    for name in LINEAGE:
        parser.add_argument(f"--lineage-{name}", default="", help="lineage recorded with the model ('=value')")
    # The SDK's driver passes every hyperparameter; ignore the ones that are not ours.
    args, _ = parser.parse_known_args(argv)
    if not args.train or not args.manifest:
        parser.error("--train and --manifest are required outside SageMaker")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    meta = train(parse_args(argv))
    print(json.dumps({"trained": meta["split"], "features": len(meta["feature_order"])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
