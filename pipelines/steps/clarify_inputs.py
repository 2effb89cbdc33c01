#!/usr/bin/env python3
"""Write the SageMaker Clarify check steps' inputs for this run (the pipeline's ClarifyInputs step).

The pipeline is shared by every model line, and each line has its own label, protected attribute
and features; a Clarify analysis configuration names them. So the configuration of each check is
written here, per run, from what the model recorded (`model_meta.json`), next to the dataset it
describes, and the check steps read both from this step's output:

    <output>/data-bias/config/analysis_config.json       pre-training bias of the training rows
    <output>/data-bias/dataset/data.csv
    <output>/model-bias/config/analysis_config.json      post-training bias of the model on the held-out rows
    <output>/model-bias/dataset/data.csv
    <output>/explainability/config/analysis_config.json  Kernel SHAP of the model on (a sample of) the held-out rows
    <output>/explainability/dataset/data.csv
    <output>/clarify_inputs.json                  counts and names only (what was written)

Each dataset is CSV without a header row, columns `[label, *feature_order, protected_attribute]`
(the configuration's `headers`); the protected attribute is an `excluded_columns` entry, so Clarify
never sends it to the model, whose serving code reads `feature_order` columns. The facet's values
are the groups other than the advantaged (majority) group of the rows — the groups `bias.json`
reports. The analysis configuration follows Clarify's documented schema (version 1.0,
`dataset_type`, `headers`, `label`, `label_values_or_threshold`, `facet`, `excluded_columns`,
`methods`, `predictor`, `probability_threshold`).

In a SageMaker Processing job the paths default to `/opt/ml/processing/{model,data,clarify}`;
locally:

    python pipelines/steps/clarify_inputs.py --model out/model --data prepared/data.csv --output out/clarify
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import logging
import os
import random
import sys
import tarfile
import tempfile
from types import ModuleType
from typing import Any

log = logging.getLogger("closedloop.clarify_inputs")

PROCESSING = "/opt/ml/processing"
CSV = "text/csv"
CHECKS = ("data-bias", "model-bias", "explainability")
REPORT = {"name": "report", "title": "Analysis Report"}


def model_code(path: str, workdir: str) -> tuple[dict[str, Any], ModuleType]:
    """The model's metadata and its own `common.py`, from `model.tar.gz` (a file or the one in `path`).

    Raises:
        SystemExit: no archive, an archive member outside its root, or no metadata/code inside.
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
    source = os.path.join(directory, "code", "common.py")
    spec = importlib.util.spec_from_file_location("closedloop_model_common", source)
    if spec is None or spec.loader is None or not os.path.isfile(source):
        raise SystemExit("closedloop step failed: the model archive has no code/common.py")
    common = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = common  # dataclasses look their module up while it loads
    spec.loader.exec_module(common)
    with open(os.path.join(directory, "model_meta.json"), encoding="utf-8") as handle:
        meta = json.load(handle)
    return meta, common


def disadvantaged(common: ModuleType, groups: list[str]) -> list[str]:
    """The facet values Clarify measures: every group but the advantaged (majority) one."""
    if not groups:
        return []
    advantaged = common.majority_group(groups)
    return sorted({g for g in groups if g != advantaged})


def analysis_config(
    check: str, meta: dict[str, Any], facet_values: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    """One check's Clarify analysis configuration (the schema of Clarify's `analysis_config.json`)."""
    attribute = meta["protected_attribute"]
    config: dict[str, Any] = {
        "version": "1.0",
        "dataset_type": CSV,
        "headers": [meta["label"], *meta["feature_order"], attribute],
        "label": meta["label"],
        "excluded_columns": [attribute],
    }
    if check in ("data-bias", "model-bias"):
        config["label_values_or_threshold"] = [meta["favourable_label"]]
        config["facet"] = [{"name_or_index": attribute, "value_or_threshold": facet_values}]
    if check == "data-bias":
        config["methods"] = {"pre_training_bias": {"methods": "all"}, "report": REPORT}
        return config
    config["predictor"] = {
        "initial_instance_count": 1,
        "instance_type": args.instance_type,
        "content_type": CSV,
        "accept_type": CSV,
    }
    if check == "model-bias":
        config["probability_threshold"] = args.probability_threshold
        config["methods"] = {"post_training_bias": {"methods": "all"}}
    else:
        config["methods"] = {
            "shap": {
                "num_samples": args.shap_samples,
                "num_clusters": args.shap_clusters,
                "agg_method": "mean_abs",
                "use_logit": False,
                "save_local_shap_values": False,
                "seed": args.seed,
            }
        }
    config["methods"]["report"] = REPORT
    return config


def write_dataset(path: str, rows: list[list[str]]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)


def clarify_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """Write the three checks' datasets and configurations; returns what was written (counts and names)."""
    with tempfile.TemporaryDirectory(prefix="closedloop-clarify-") as workdir:
        meta, common = model_code(args.model, workdir)
        if not meta.get("protected_attribute"):
            raise common.StepError("the model declares no protected attribute: Clarify's bias checks need one")
        header, training, held_out, _ = common.split_rows(meta, args.data)
    layout = [meta["label"], *meta["feature_order"], meta["protected_attribute"]]
    training_rows = common.columns(header, training, layout)
    held_rows = common.columns(header, held_out, layout)
    explained = list(held_rows)
    if len(explained) > args.explain_rows:
        explained = random.Random(args.seed).sample(explained, args.explain_rows)  # noqa: S311 - a sample, not a secret
    datasets = {"data-bias": training_rows, "model-bias": held_rows, "explainability": explained}
    summary: dict[str, Any] = {
        "label": meta["label"],
        "protected_attribute": meta["protected_attribute"],
        "features": list(meta["feature_order"]),
        "checks": {},
    }
    for check in CHECKS:
        rows = datasets[check]
        facet_values = disadvantaged(common, [row[-1] for row in rows])
        common.write_json(
            os.path.join(args.output, check, "config"),
            "analysis_config.json",
            analysis_config(check, meta, facet_values, args),
        )
        write_dataset(os.path.join(args.output, check, "dataset", "data.csv"), rows)
        summary["checks"][check] = {"rows": len(rows), "facet_values": len(facet_values)}
    common.write_json(args.output, "clarify_inputs.json", summary)
    log.info(
        "clarify inputs: %d training rows, %d held-out rows, %d explained",
        len(training_rows),
        len(held_rows),
        len(explained),
    )
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=f"{PROCESSING}/model", help="model.tar.gz, its dir, or the unpacked model")
    parser.add_argument("--data", default=f"{PROCESSING}/data", help="prepared data.csv (or its directory)")
    parser.add_argument("--output", default=f"{PROCESSING}/clarify")
    parser.add_argument("--instance-type", default="ml.m5.large", help="the shadow endpoint's instance type")
    parser.add_argument("--probability-threshold", type=float, default=0.5)
    parser.add_argument("--explain-rows", type=int, default=300, help="held-out rows Kernel SHAP explains")
    parser.add_argument("--shap-samples", type=int, default=100)
    parser.add_argument("--shap-clusters", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    args, _ = parser.parse_known_args(argv)
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    summary = clarify_inputs(parse_args(argv))
    print(json.dumps({check: figures["rows"] for check, figures in summary["checks"].items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
