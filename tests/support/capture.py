"""Captured endpoint traffic in SageMaker's data capture format, and a live model to compare it with.

Shared by the drift tests and `bench/drift_throughput.py`: rows come from the synthetic loans
dataset, scores from a fixed logistic model of the features, files are SageMaker's JSON Lines
under `capture/<endpoint>/<variant>/yyyy/mm/dd/hh/mm-ss-mmm-<uuid>.jsonl`. Baselines are written
by the training pipeline's own Baseline step (`pipelines/steps/baseline.py`), the only writer.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import json
import math
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from closedloop import lineage
from closedloop_ops import synthetic
from support.steps import load_step

FEATURES = [name for name in synthetic.FEATURES if name != "group"]
PROTECTED = "group"
CATEGORICAL = ("purpose", "home_ownership")
LABEL = "approved"
STEPS = Path(__file__).resolve().parents[2] / "pipelines" / "steps"
COPY = "baseline_copy"  # the split key telling the two copies of each row apart (see `pipeline_baseline`)


def score(row: dict[str, str]) -> float:
    """The probability of approval a (fixed, simple) model gives a row; it never sees the group."""
    income = float(row["income"])
    loan = float(row["loan_amount"])
    z = (
        1.1
        - 3.0 * loan / max(income, 1.0)
        + 0.08 * float(row["credit_history_years"])
        - 0.5 * float(row["late_payments"])
        + 0.05 * float(row["employment_years"])
        + (0.3 if row["home_ownership"] == "own" else 0.0)
    )
    return 1.0 / (1.0 + math.exp(-z))


@cache
def _step(name: str) -> ModuleType:
    """A pipeline step script, loaded once as its own module."""
    return load_step(name, "closedloop_baseline_writer")


def _split_salt(common: ModuleType) -> str:
    """A salt whose held-out split puts the copy "training" out of and the copy "held-out" in the held-out rows."""
    for attempt in range(1000):
        salt = f"baseline-{attempt}"
        mask = common.holdout_mask([COPY], [["training"], ["held-out"]], COPY, salt, 0.5)
        if mask.tolist() == [False, True]:
            return salt
    raise AssertionError("no salt splits the two copies")  # about one salt in four does


def pipeline_baseline(
    rows: Sequence[Mapping[str, str]],
    *,
    feature_types: Mapping[str, str],
    label: str = LABEL,
    protected_attribute: str | None = PROTECTED,
    fixed_score: float | None = None,
) -> dict[str, Any]:
    """`baseline.json` as the pipeline's Baseline step writes it for `rows`, scored by the fixed model.

    The step describes the features over a model's training rows and the scores and bias over its
    held-out rows, recomputing the split from the model's metadata. Here the prepared data holds
    every row twice, the copies told apart by a split key whose two values fall on either side of
    the split, so every section of the baseline describes exactly `rows`. The model directory holds
    the steps' `common.py` and, as `code/inference.py`, `support/fixed_model.py`, which scores with
    `score` or gives every row `fixed_score`. `feature_types` (name → "numeric" or "categorical")
    is the feature order; rows without a `label` value are left out, as training leaves them out.
    """
    common, step = _step("common"), _step("baseline")
    order = list(feature_types)
    header = [*order, *([protected_attribute] if protected_attribute else []), label, COPY]
    table = [[row.get(name, "") for name in header[:-1]] + [copy] for copy in ("training", "held-out") for row in rows]
    labelled = sum(1 for row in rows if row.get(label, "").strip())
    salt = _split_salt(common)
    meta = {
        "dataset": "loans",
        "label": label,
        "favourable_label": "1",
        "protected_attribute": protected_attribute,
        "feature_order": order,
        "feature_types": dict(feature_types),
        "split": {"key": COPY, "salt": salt, "test_fraction": 0.5, "rows_train": labelled, "rows_test": labelled},
        "fixed_score": fixed_score,
    }
    with tempfile.TemporaryDirectory(prefix="closedloop-baseline-test-") as workdir:
        root = Path(workdir)
        data, model, output = root / "prepared" / "data.csv", root / "model", root / "baseline"
        data.parent.mkdir()
        with data.open("w", encoding="utf-8", newline="") as handle:
            csv.writer(handle).writerows([header, *table])
        (model / "code").mkdir(parents=True)
        shutil.copyfile(STEPS / "common.py", model / "code" / "common.py")
        shutil.copyfile(Path(__file__).with_name("fixed_model.py"), model / "code" / "inference.py")
        (model / "model_meta.json").write_text(json.dumps(meta), encoding="utf-8")
        step.baseline(step.parse_args(["--model", str(model), "--data", str(data), "--output", str(output)]))
        document: dict[str, Any] = json.loads((output / "baseline.json").read_text(encoding="utf-8"))
    return document


def baseline_document(n: int = 4000, seed: int = 1, drift: synthetic.Drift = synthetic.NO_DRIFT) -> dict[str, Any]:
    """`baseline.json` of `n` rows (undrifted unless `drift` says otherwise) and the model's scores on them."""
    rows = list(synthetic.rows(n, seed=seed, drift=drift))
    types = {name: "categorical" if name in CATEGORICAL else "numeric" for name in FEATURES}
    return pipeline_baseline(rows, feature_types=types)


def bias_report(dppl: float, disadvantaged: str = "B") -> dict[str, Any]:
    """`bias.json` in Clarify's analysis format with the evaluation's DPPL."""
    return {
        "version": "1.0",
        "post_training_bias_metrics": {
            "label": "approved",
            "label_value_or_threshold": "1",
            "facets": {
                PROTECTED: [
                    {
                        "value_or_threshold": disadvantaged,
                        "metrics": [
                            {"name": "DI", "description": "Disparate Impact (DI)", "value": 0.91},
                            {
                                "name": "DPPL",
                                "description": "Difference in Positive Proportions in Predicted Labels (DPPL)",
                                "value": dppl,
                            },
                        ],
                    }
                ]
            },
        },
    }


def _payload(text: str, encoding: str, content_type: str, mode: str) -> dict[str, str]:
    data = base64.b64encode(text.encode()).decode() if encoding == "BASE64" else text
    return {"observedContentType": content_type, "mode": mode, "data": data, "encoding": encoding}


def capture_record(
    rows: Sequence[dict[str, str]],
    *,
    at: datetime,
    encoding: str = "CSV",
    with_group: bool = True,
    scores: Sequence[float] | None = None,
) -> dict[str, Any]:
    """One capture line: a request of `rows` (CSV, feature order, then the group) and its scores."""
    lines = [",".join([*(r[f] for f in FEATURES), *([r[PROTECTED]] if with_group else [])]) for r in rows]
    values = scores if scores is not None else [score(r) for r in rows]
    return {
        "captureData": {
            "endpointInput": _payload("\n".join(lines) + "\n", encoding, "text/csv", "INPUT"),
            "endpointOutput": _payload(
                "\n".join(f"{s:.6f}" for s in values), encoding, "text/csv; charset=utf-8", "OUTPUT"
            ),
        },
        "eventMetadata": {
            "eventId": str(uuid.uuid4()),
            "inferenceId": f"inf-{uuid.uuid4().hex[:12]}",
            "inferenceTime": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "eventVersion": "0",
    }


def capture_file(
    rows: Iterable[dict[str, str]],
    *,
    start: datetime,
    rows_per_request: int = 1,
    encoding: str = "CSV",
    with_group: bool = True,
) -> bytes:
    """A capture file's bytes: one line per request of `rows_per_request` rows, a second apart."""
    batch: list[dict[str, str]] = []
    lines: list[str] = []
    for row in rows:
        batch.append(row)
        if len(batch) == rows_per_request:
            at = start + timedelta(seconds=len(lines))
            lines.append(json.dumps(capture_record(batch, at=at, encoding=encoding, with_group=with_group)))
            batch = []
    if batch:
        at = start + timedelta(seconds=len(lines))
        lines.append(json.dumps(capture_record(batch, at=at, encoding=encoding, with_group=with_group)))
    return "".join(line + "\n" for line in lines).encode()


def capture_key(endpoint: str, at: datetime, *, variant: str = "AllTraffic", prefix: str = "capture") -> str:
    """Where SageMaker writes a capture file started at `at`."""
    return (
        f"{prefix}/{endpoint}/{variant}/{at:%Y/%m/%d/%H}/{at:%M-%S}-{at.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"
    )


def deploy_live_model(
    *,
    account: str,
    region: str,
    endpoint: str,
    model_group: str,
    evidence_bucket: str,
    capture_bucket: str,
    baseline: dict[str, Any] | None = None,
    bias: dict[str, Any] | None = None,
    deployed_at: datetime | None = None,
    tag_package: bool = True,
) -> str:
    """Inside moto: a registered model version with its evidence, served by `endpoint` with capture on.

    Returns the model package ARN.
    """
    import boto3

    s3 = boto3.client("s3", region_name=region)
    sm = boto3.client("sagemaker", region_name=region)
    s3.put_object(Bucket=evidence_bucket, Key="evidence/v1/baseline.json", Body=json.dumps(baseline or {}).encode())
    s3.put_object(Bucket=evidence_bucket, Key="evidence/v1/bias.json", Body=json.dumps(bias or {}).encode())
    with contextlib.suppress(sm.exceptions.ClientError):  # another version may have created the group
        sm.create_model_package_group(ModelPackageGroupName=model_group)
    metrics: dict[str, Any] = {}
    if bias is not None:
        metrics["ModelMetrics"] = {
            "Bias": {
                "PostTrainingReport": {
                    "ContentType": "application/json",
                    "S3Uri": f"s3://{evidence_bucket}/evidence/v1/bias.json",
                }
            }
        }
    if baseline is not None:
        metrics["DriftCheckBaselines"] = {
            "ModelDataQuality": {
                "Statistics": {
                    "ContentType": "application/json",
                    "S3Uri": f"s3://{evidence_bucket}/evidence/v1/baseline.json",
                }
            }
        }
    image = f"141502667606.dkr.ecr.{region}.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"
    package_arn = sm.create_model_package(
        ModelPackageGroupName=model_group,
        InferenceSpecification={
            "Containers": [{"Image": image, "ModelDataUrl": f"s3://{evidence_bucket}/model/v1/model.tar.gz"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        ModelApprovalStatus="Approved",
        **metrics,
    )["ModelPackageArn"]
    sm.create_model(
        ModelName=f"{endpoint}-v1",
        PrimaryContainer={"Image": image},
        ExecutionRoleArn=f"arn:aws:iam::{account}:role/model",
    )
    sm.create_endpoint_config(
        EndpointConfigName=f"{endpoint}-v1",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": f"{endpoint}-v1",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
        DataCaptureConfig={
            "EnableCapture": True,
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": f"s3://{capture_bucket}/capture",
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        },
        Tags=[{"Key": lineage.MODEL_PACKAGE, "Value": package_arn}] if tag_package else [],
    )
    sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=f"{endpoint}-v1")
    if deployed_at is not None:
        from moto.sagemaker.models import sagemaker_backends

        served = sagemaker_backends[account][region].endpoints[endpoint]
        served.creation_time = served.last_modified_time = deployed_at
    return package_arn
