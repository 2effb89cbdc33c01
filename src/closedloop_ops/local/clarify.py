"""SageMaker Clarify's checks on this machine, with the open-source libraries Clarify is built on.

The local pipeline executor runs a `ClarifyCheck` step of the pipeline definition here instead of
in Clarify's processing container: it reads the step's processing job inputs as the definition
gives them (`analysis_config` — Clarify's analysis configuration —, `dataset`), computes, and writes
`analysis.json` in Clarify's documented format to the job's `analysis_result` output.

* bias (`DATA_BIAS`, `MODEL_BIAS`): `smclarify`, the open-source bias metrics library of Clarify
  (`smclarify.bias.report.bias_report`), pre-training (CI, DPL, KL, JS, LP, TVD, KS, CDDL) on the
  dataset's labels, post-training (DPPL, DI, DCA, DCR, RD, DAR, DRR, AD, CDDPL, TE, FT) on the labels
  the model predicts at the configuration's `probability_threshold`;
* explainability (`MODEL_EXPLAINABILITY`): `shap`'s `KernelExplainer` — Kernel SHAP, the method of
  Clarify's `shap` analysis — on the model's favourable-label score, with a K-means baseline of
  `num_clusters` rows (centres rounded to values the data holds, so a category stays a category)
  and `num_samples` coalitions per row; global values aggregated by `agg_method` (`mean_abs`).

The model is the one the definition names (`ModelName` → the Model's `ModelDataUrl`), loaded with
the serving code inside its own archive, as the endpoint would serve it.

`analysis.json` (Clarify's "Get the Analysis Results"):

    {"version": "1.0",
     "pre_training_bias_metrics":  {"label": …, "label_value_or_threshold": …,
                                    "facets": {<facet>: [{"value_or_threshold": …,
                                                          "metrics": [{"name", "description", "value"}, …]}]}},
     "post_training_bias_metrics": {… the same shape …},
     "explanations": {"kernel_shap": {"label0": {"global_shap_values": {<feature>: …},
                                                 "expected_value": …}}}}

Nothing here writes or logs a data value: the reports hold metric values, column names and the
facet values the configuration names.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

DATA_BIAS, MODEL_BIAS, MODEL_EXPLAINABILITY = "DATA_BIAS", "MODEL_BIAS", "MODEL_EXPLAINABILITY"
CHECK_TYPES = (DATA_BIAS, MODEL_BIAS, MODEL_EXPLAINABILITY)
ANALYSIS_FILE = "analysis.json"
VERSION = "1.0"
SHAP_LABEL = "label0"  # Clarify's name for the single score of a model without label headers
# The local run explains at most this many rows (the pipeline's step writes up to 300): the demo runs
# the pipeline several times, and the figures of a few hundred rows are stable to two decimals.
LOCAL_EXPLAIN_ROWS = 200
DEFAULT_SHAP_SAMPLES = 100
DEFAULT_SHAP_CLUSTERS = 10


class ClarifyCheckError(Exception):
    """A check cannot run on its inputs (names what is wrong, never a data value)."""


@dataclass(frozen=True)
class Dataset:
    """A Clarify dataset: headers and rows (text), and the configuration's roles of its columns."""

    headers: list[str]
    rows: list[list[str]]
    label: str
    excluded: list[str]

    @property
    def features(self) -> list[str]:
        """The columns Clarify sends to the model: all but the label and the excluded ones."""
        return [h for h in self.headers if h != self.label and h not in self.excluded]

    def column(self, name: str) -> list[str]:
        index = self.headers.index(name)
        return [row[index] for row in self.rows]

    def matrix(self, names: Sequence[str]) -> list[list[str]]:
        indexes = [self.headers.index(name) for name in names]
        return [[row[i] for i in indexes] for row in self.rows]


# -- reading the inputs ---------------------------------------------------------------------------


def read_dataset(config: dict[str, Any], text: str) -> Dataset:
    """Clarify's `text/csv` dataset: no header row; the configuration's `headers` name the columns.

    Raises:
        ClarifyCheckError: not CSV, no headers or label, or a row of another width.
    """
    if config.get("dataset_type", "text/csv") != "text/csv":
        raise ClarifyCheckError(f"dataset_type {config.get('dataset_type')!r}: only text/csv runs locally")
    headers = [str(h) for h in config.get("headers") or []]
    label = config.get("label")
    if not headers or not isinstance(label, str) or label not in headers:
        raise ClarifyCheckError("the analysis configuration names no headers, or a label that is not one of them")
    rows = [row for row in csv.reader(io.StringIO(text)) if row]
    widths = {len(row) for row in rows}
    if widths - {len(headers)}:
        raise ClarifyCheckError(f"the dataset has rows of {sorted(widths)} columns, the headers name {len(headers)}")
    excluded = [str(c) for c in config.get("excluded_columns") or []]
    return Dataset(headers=headers, rows=rows, label=label, excluded=excluded)


@dataclass
class ServedModel:
    """A model archive loaded with its own serving code (`code/inference.py`), as the endpoint serves it."""

    serving: ModuleType
    loaded: Any

    def scores(self, rows: list[list[str]]) -> Any:
        """The favourable-label score of rows of text, through the serving code (as the endpoint answers)."""
        return self.serving.score(self.loaded, rows)

    def scores_of_matrix(self, names: list[str], matrix: Any) -> Any | None:
        """The same scores from the model's input matrix (numbers as floats, categories as text — what
        `inference.to_matrix` makes of text rows), skipping the text round trip; None when the served
        model does not expose its estimator or reads other columns."""
        import numpy as np

        estimator = getattr(self.loaded, "estimator", None)
        index = getattr(self.loaded, "positive_index", None)
        if estimator is None or index is None or list(getattr(self.loaded, "feature_order", [])) != names:
            return None
        return np.asarray(estimator.predict_proba(matrix)[:, index], dtype=float)


def load_model(archive: bytes, workdir: Path) -> ServedModel:
    """Unpack `model.tar.gz` and load it through the `inference.py` inside it.

    Raises:
        ClarifyCheckError: a member outside the archive's root, or no serving code.
    """
    directory = workdir / "model"
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        tar.extractall(directory, filter="data")
    modules: dict[str, ModuleType] = {}
    for name in ("common", "inference"):
        source = directory / "code" / f"{name}.py"
        module_name = f"closedloop_model_{name}"
        spec = importlib.util.spec_from_file_location(module_name, source)
        if spec is None or spec.loader is None or not source.is_file():
            raise ClarifyCheckError(f"the model archive has no code/{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # inference.py imports common; dataclasses look their module up
        spec.loader.exec_module(module)
        modules[name] = module
    serving = modules["inference"]
    return ServedModel(serving=serving, loaded=serving.model_fn(str(directory)))


# -- bias (smclarify) ------------------------------------------------------------------------------


def _facets(config: dict[str, Any]) -> list[tuple[str, list[Any] | None]]:
    facets = config.get("facet") or []
    if not facets:
        raise ClarifyCheckError("the analysis configuration names no facet")
    found = []
    for facet in facets:
        name = facet.get("name_or_index")
        if not isinstance(name, str):
            raise ClarifyCheckError("a facet is named by index: only names run locally")
        values = facet.get("value_or_threshold")
        found.append((name, list(values) if values else None))
    return found


def _methods(config: dict[str, Any], stage: str) -> list[str] | None:
    """The metric names the configuration asks for (`"all"` → None: smclarify's full list)."""
    methods = ((config.get("methods") or {}).get(stage) or {}).get("methods", "all")
    if methods == "all":
        return None
    return [methods] if isinstance(methods, str) else [str(m) for m in methods]


def bias_section(
    config: dict[str, Any], dataset: Dataset, stage: str, predicted: list[str] | None = None
) -> dict[str, Any]:
    """One `*_training_bias_metrics` section of `analysis.json`, computed by smclarify.

    Args:
        stage: "pre_training_bias" or "post_training_bias".
        predicted: the model's predicted labels (post-training), as label values.
    """
    import logging

    import pandas as pd
    from smclarify.bias import report  # type: ignore[import-untyped]

    # smclarify logs a traceback for every metric it cannot compute (CDDL without a group variable,
    # FT on text columns); the report carries the reason as the metric's "error", as Clarify's does
    logging.getLogger("smclarify").setLevel(logging.CRITICAL)

    positive = [str(v) for v in config.get("label_values_or_threshold") or []]
    if not positive:
        raise ClarifyCheckError("the analysis configuration names no label_values_or_threshold")
    frame = pd.DataFrame(dataset.rows, columns=dataset.headers)
    label_series = frame[dataset.label]
    label = report.LabelColumn(dataset.label, label_series, positive)
    predicted_column = None
    if stage == "post_training_bias":
        if predicted is None:
            raise ClarifyCheckError("post-training bias needs the model's predicted labels")
        predicted_series = pd.Series(predicted, name="predicted_label")
        frame["predicted_label"] = predicted_series
        predicted_column = report.LabelColumn("predicted_label", predicted_series, positive)
    features = frame.drop(columns=[dataset.label, *(["predicted_label"] if predicted_column else [])])
    methods = _methods(config, stage)
    facets: dict[str, Any] = {}
    for name, values in _facets(config):
        kwargs: dict[str, Any] = {}
        if methods is not None:
            kwargs["metrics"] = methods
        facets[name] = report.bias_report(
            features,
            report.FacetColumn(name, values),
            label,
            report.StageType.PRE_TRAINING if stage == "pre_training_bias" else report.StageType.POST_TRAINING,
            predicted_column,
            **kwargs,
        )
    return {
        "label": dataset.label,
        "label_value_or_threshold": report.label_value_or_threshold(label_series, positive),
        "facets": _finite(facets),
    }


def predicted_labels(config: dict[str, Any], dataset: Dataset, model: ServedModel) -> list[str]:
    """The model's predicted label of every row: favourable (the configuration's label value) at
    `score >= probability_threshold`, else another label value the data holds (or "0")."""
    threshold = float(config.get("probability_threshold", 0.5))
    scores = model.scores(dataset.matrix(dataset.features))
    favourable = str((config.get("label_values_or_threshold") or ["1"])[0])
    others = sorted({v for v in dataset.column(dataset.label) if v != favourable})
    unfavourable = others[0] if others else "0"
    return [favourable if float(s) >= threshold else unfavourable for s in scores]


# -- explainability (shap) -------------------------------------------------------------------------


@dataclass
class _Encoding:
    """Each feature column as numbers for Kernel SHAP: numbers stay numbers, text becomes codes."""

    names: list[str]
    categories: dict[int, list[str]]

    @classmethod
    def of(cls, names: list[str], rows: list[list[str]]) -> _Encoding:
        categories: dict[int, list[str]] = {}
        for index in range(len(names)):
            values = [row[index] for row in rows]
            if not all(_is_number(v) or not v.strip() for v in values):
                categories[index] = sorted(set(values))
        return cls(names=names, categories=categories)

    def encode(self, rows: list[list[str]]) -> Any:
        import numpy as np

        matrix = np.empty((len(rows), len(self.names)), dtype=float)
        for j in range(len(self.names)):
            codes = {value: float(i) for i, value in enumerate(self.categories.get(j, []))}
            for i, row in enumerate(rows):
                value = row[j]
                matrix[i, j] = codes[value] if j in self.categories else (float(value) if value.strip() else np.nan)
        return matrix

    def model_input(self, matrix: Any) -> Any:
        """Codes back to the model's input matrix: numbers as floats (NaN when empty), categories as text."""
        import numpy as np

        rows = np.empty(matrix.shape, dtype=object)
        for j in range(len(self.names)):
            if j in self.categories:
                rows[:, j] = np.asarray(self.categories[j], dtype=object)[np.rint(matrix[:, j]).astype(int)]
            else:
                rows[:, j] = matrix[:, j].astype(float)
        return rows

    def decode(self, matrix: Any) -> list[list[str]]:
        rows = []
        for values in matrix:
            row = []
            for j, value in enumerate(values):
                if j in self.categories:
                    row.append(self.categories[j][round(float(value))])
                else:
                    row.append("" if math.isnan(value) else repr(float(value)))
            rows.append(row)
        return rows


def _is_number(value: str) -> bool:
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


def explanations_section(
    config: dict[str, Any], dataset: Dataset, model: ServedModel, *, max_rows: int = LOCAL_EXPLAIN_ROWS
) -> dict[str, Any]:
    """`explanations.kernel_shap` of `analysis.json`: global SHAP values of the model's score per feature.

    Raises:
        ClarifyCheckError: the configuration asks for no `shap` method, or for an aggregation Clarify lacks.
    """
    import numpy as np
    import shap  # type: ignore[import-untyped]

    options = (config.get("methods") or {}).get("shap")
    if not isinstance(options, dict):
        raise ClarifyCheckError("the analysis configuration asks for no shap method")
    aggregate = options.get("agg_method", "mean_abs")
    if aggregate not in ("mean_abs", "median", "mean_sq"):
        raise ClarifyCheckError(f"agg_method {aggregate!r} is not one of Clarify's")
    seed = int(options.get("seed", 0) or 0)
    samples = int(options.get("num_samples") or DEFAULT_SHAP_SAMPLES)
    clusters = int(options.get("num_clusters") or DEFAULT_SHAP_CLUSTERS)
    features = dataset.features
    rows = dataset.matrix(features)
    if len(rows) > max_rows:
        picked = np.random.default_rng(seed).choice(len(rows), size=max_rows, replace=False)
        rows = [rows[i] for i in sorted(picked.tolist())]
    encoding = _Encoding.of(features, rows)
    matrix = encoding.encode(rows)

    direct = model.scores_of_matrix(features, encoding.model_input(matrix[:1])) is not None

    def predict_batch(points: Any) -> Any:
        if direct:  # tens of thousands of perturbed rows: no text round trip
            return model.scores_of_matrix(features, encoding.model_input(points))
        return np.asarray(model.scores(encoding.decode(points)), dtype=float)

    # Kernel SHAP scores each explained row alone before its coalitions: score them all in one call
    # (a call costs milliseconds of fixed overhead, a row microseconds)
    scored = dict(zip((row.tobytes() for row in matrix), predict_batch(matrix).tolist(), strict=True))

    def predict(points: Any) -> Any:
        if len(points) == 1 and points[0].tobytes() in scored:
            return np.array([scored[points[0].tobytes()]])
        return predict_batch(points)

    if np.isnan(matrix).any() or len(rows) <= clusters:
        background: Any = shap.sample(matrix, min(clusters, len(rows)), random_state=seed)
    else:
        np.random.seed(seed)
        background = shap.kmeans(matrix, clusters, round_values=True)
    explainer = shap.KernelExplainer(predict, background, link="identity")
    values = np.asarray(explainer.shap_values(matrix, nsamples=samples, silent=True, l1_reg=False), dtype=float)
    if aggregate == "mean_abs":
        global_values = np.abs(values).mean(axis=0)
    elif aggregate == "median":
        global_values = np.median(values, axis=0)
    else:
        global_values = (values**2).mean(axis=0)
    expected = np.asarray(explainer.expected_value, dtype=float).reshape(-1)
    return {
        "kernel_shap": {
            SHAP_LABEL: {
                "global_shap_values": {name: _round(float(v)) for name, v in zip(features, global_values, strict=True)},
                "expected_value": _round(float(expected[0])),
            }
        }
    }


# -- the check ------------------------------------------------------------------------------------


def analysis(
    check_type: str, config: dict[str, Any], dataset_text: str, model: ServedModel | None = None
) -> dict[str, Any]:
    """The `analysis.json` of one Clarify check.

    Raises:
        ClarifyCheckError: an unknown check type, a model check without a model, or unusable inputs.
    """
    if check_type not in CHECK_TYPES:
        raise ClarifyCheckError(f"check type {check_type!r} is not one of {', '.join(CHECK_TYPES)}")
    dataset = read_dataset(config, dataset_text)
    if not dataset.rows:
        raise ClarifyCheckError("the dataset holds no rows")
    document: dict[str, Any] = {"version": VERSION}
    if check_type == DATA_BIAS:
        document["pre_training_bias_metrics"] = bias_section(config, dataset, "pre_training_bias")
        return document
    if model is None:
        raise ClarifyCheckError(f"a {check_type} check needs the model (ModelName)")
    if check_type == MODEL_BIAS:
        predicted = predicted_labels(config, dataset, model)
        document["post_training_bias_metrics"] = bias_section(config, dataset, "post_training_bias", predicted)
        return document
    document["explanations"] = explanations_section(config, dataset, model)
    return document


def run_check(
    s3: Any, *, check_type: str, config_uri: str, dataset_uri: str, output_uri: str, model_data_url: str | None
) -> tuple[str, dict[str, Any]]:
    """Run one check on its inputs in S3 and write `analysis.json` under `output_uri`.

    Returns:
        The S3 URI of `analysis.json` and what the run measured (counts and seconds).

    Raises:
        ClarifyCheckError: the inputs cannot be read or used.
    """
    started = time.perf_counter()
    config = json.loads(_read_one(s3, config_uri, suffix=".json"))
    dataset_text = _read_prefix(s3, dataset_uri)
    model = None
    with tempfile.TemporaryDirectory(prefix="closedloop-clarify-") as workdir:
        if check_type != DATA_BIAS:
            if not model_data_url:
                raise ClarifyCheckError(f"a {check_type} check needs the model (ModelName)")
            model = load_model(_get(s3, model_data_url), Path(workdir))
        document = analysis(check_type, config, dataset_text, model)
    target = output_uri.rstrip("/") + "/" + ANALYSIS_FILE
    bucket, _, key = target.removeprefix("s3://").partition("/")
    body = json.dumps(document, indent=1, sort_keys=True, allow_nan=False).encode()
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    return target, {"check_type": check_type, "seconds": round(time.perf_counter() - started, 3)}


def _get(s3: Any, uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def _keys(s3: Any, uri: str) -> list[str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", []) if not item["Key"].endswith("/")]
    return [f"s3://{bucket}/{key}" for key in sorted(keys)]


def _read_one(s3: Any, uri: str, *, suffix: str) -> str:
    """The one object at `uri` (an S3Prefix input: a key, or a prefix holding one `*suffix` object)."""
    found = [key for key in _keys(s3, uri) if key.endswith(suffix)]
    if len(found) != 1:
        raise ClarifyCheckError(f"expected one *{suffix} object under the input, found {len(found)}")
    return _get(s3, found[0]).decode("utf-8")


def _read_prefix(s3: Any, uri: str) -> str:
    """Every object under an S3Prefix input, concatenated (Clarify reads a prefix's files as one dataset)."""
    parts = [_get(s3, key).decode("utf-8") for key in _keys(s3, uri)]
    if not parts:
        raise ClarifyCheckError("the dataset input holds no object")
    return "".join(part if part.endswith("\n") else part + "\n" for part in parts)


def _round(value: float) -> float | None:
    return round(value, 6) if math.isfinite(value) else None


def _finite(value: Any) -> Any:
    """Clarify writes JSON: a metric smclarify returns as NaN or infinity becomes null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


# -- an explainability job of Clarify's processing container (route 7's attribution drift) ----------

# Route 7's job explains a captured window: locally at most this many of its rows (the demo runs it
# after every drift run of every line). Measured on the demo's undrifted windows (3 per line, 3 seeds):
# 60 rows gave an nDCG as low as 0.92 against the version's own baseline, 100 rows ≥ 0.98 everywhere,
# at 0.3-0.4 s a job.
MONITOR_EXPLAIN_ROWS = 100


def read_features(config: dict[str, Any], text: str) -> Dataset:
    """A dataset of features only (`text/csv`, no header row): explainability needs no label.

    Raises:
        ClarifyCheckError: not CSV, no headers, or a row of another width.
    """
    if config.get("dataset_type", "text/csv") != "text/csv":
        raise ClarifyCheckError(f"dataset_type {config.get('dataset_type')!r}: only text/csv runs locally")
    headers = [str(h) for h in config.get("headers") or []]
    if not headers:
        raise ClarifyCheckError("the analysis configuration names no headers")
    rows = [row for row in csv.reader(io.StringIO(text)) if row]
    widths = {len(row) for row in rows}
    if widths - {len(headers)}:
        raise ClarifyCheckError(f"the dataset has rows of {sorted(widths)} columns, the headers name {len(headers)}")
    label = config.get("label")
    excluded = [str(c) for c in config.get("excluded_columns") or []]
    return Dataset(headers=headers, rows=rows, label=label if isinstance(label, str) else "", excluded=excluded)


def explainability_analysis(
    config: dict[str, Any], dataset_text: str, model: ServedModel, *, max_rows: int = MONITOR_EXPLAIN_ROWS
) -> dict[str, Any]:
    """The `analysis.json` of an explainability-only analysis (Clarify's processing job with `methods.shap`).

    Raises:
        ClarifyCheckError: no rows, no `shap` method, or unusable inputs.
    """
    dataset = read_features(config, dataset_text)
    if not dataset.rows:
        raise ClarifyCheckError("the dataset holds no rows")
    return {"version": VERSION, "explanations": explanations_section(config, dataset, model, max_rows=max_rows)}


def run_explainability_job(
    s3: Any, sagemaker: Any, *, config_dir: Path, data_dir: Path, output_dir: Path, max_rows: int = MONITOR_EXPLAIN_ROWS
) -> dict[str, Any]:
    """What Clarify's container does for a Processing job of `methods.shap`, on its local directories:
    reads `analysis_config.json` and the dataset, serves the configuration's `predictor.model_name`
    (its `ModelDataUrl`, loaded with its own serving code) and writes `analysis.json` to `output_dir`.

    Returns:
        What the run measured (rows explained, seconds).

    Raises:
        ClarifyCheckError: the inputs cannot be read or used, or the model does not exist.
    """
    started = time.perf_counter()
    configs = sorted(config_dir.rglob("*.json"))
    if len(configs) != 1:
        raise ClarifyCheckError(f"expected one analysis configuration, found {len(configs)}")
    config = json.loads(configs[0].read_text(encoding="utf-8"))
    parts = [path.read_text(encoding="utf-8") for path in sorted(data_dir.rglob("*")) if path.is_file()]
    if not parts:
        raise ClarifyCheckError("the dataset input holds no file")
    text = "".join(part if part.endswith("\n") else part + "\n" for part in parts)
    model_name = (config.get("predictor") or {}).get("model_name")
    if not isinstance(model_name, str) or not model_name:
        raise ClarifyCheckError("the analysis configuration names no predictor model_name")
    try:
        described = sagemaker.describe_model(ModelName=model_name)
    except Exception as exc:  # botocore's ClientError: the model is not there
        raise ClarifyCheckError(f"model {model_name} cannot be described") from exc
    containers = [described.get("PrimaryContainer") or {}, *(described.get("Containers") or [])]
    data_url = next((c["ModelDataUrl"] for c in containers if c.get("ModelDataUrl")), None)
    package = next((c["ModelPackageName"] for c in containers if c.get("ModelPackageName")), None)
    if not data_url and package:  # a model of a registered version serves the version's archive
        inference = sagemaker.describe_model_package(ModelPackageName=package).get("InferenceSpecification") or {}
        data_url = next((c["ModelDataUrl"] for c in inference.get("Containers", []) if c.get("ModelDataUrl")), None)
    if not data_url:
        raise ClarifyCheckError(f"model {model_name} has no ModelDataUrl")
    with tempfile.TemporaryDirectory(prefix="closedloop-clarify-") as workdir:
        model = load_model(_get(s3, data_url), Path(workdir))
        document = explainability_analysis(config, text, model, max_rows=max_rows)
    output_dir.mkdir(parents=True, exist_ok=True)
    body = json.dumps(document, indent=1, sort_keys=True, allow_nan=False)
    (output_dir / ANALYSIS_FILE).write_text(body, encoding="utf-8")
    rows = len(read_features(config, text).rows)
    return {"rows": min(rows, max_rows), "seconds": round(time.perf_counter() - started, 3)}
