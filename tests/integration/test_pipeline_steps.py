"""The pipeline's step scripts, run locally exactly as their containers run them, on prepared synthetic data.

The raw synthetic loans (with PII) go through the real preparation script on moto; then
train → evaluate → baseline run as separate processes with explicit paths, and the outputs are
checked against the formats the approval gate and the drift monitor read.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

from closedloop.dataprep.arrival import DataPrepRun, RawObject
from closedloop.dataprep.policy import load_policy
from closedloop.dataprep.requests import build_prep_manifest, manifest_key
from closedloop.prep import prepare
from closedloop_ops import synthetic
from support.stack import REGION, Stack, provision, stack_env

STEPS = Path(__file__).resolve().parents[2] / "pipelines" / "steps"
ROWS, SEED = 4000, 7
DEMO_KEY = "closedloop-demo-pseudonymisation-key-0001"


def run_step(script: str, *args: str) -> dict[str, Any]:
    """Run a step script in its own process (as a container would) and return its summary line."""
    done = subprocess.run(
        [sys.executable, str(STEPS / script), *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return summary


def prepared_synthetic_data(stack: Stack, target: Path) -> tuple[Path, Path]:
    """Synthetic raw loans → the real preparation script (on moto) → data.csv and manifest.json locally."""
    s3 = boto3.client("s3", region_name=REGION)
    body = synthetic.to_csv(list(synthetic.rows(ROWS, seed=SEED))).encode()
    put = s3.put_object(Bucket=stack.data_bucket, Key="raw/loans/applications.csv", Body=body)
    obj = RawObject(
        bucket=stack.data_bucket,
        key="raw/loans/applications.csv",
        dataset="loans",
        format="csv",
        size=len(body),
        etag=put["ETag"].strip('"'),
        version_id=put["VersionId"],
    )
    run = DataPrepRun(dataset="loans", objects=(obj,))
    manifest = build_prep_manifest(
        run,
        load_policy("loans"),
        data_bucket=stack.data_bucket,
        prepared_prefix="prepared/",
        quarantine_bucket=stack.settings.quarantine_bucket,
        secret_arn=stack.settings.pseudonymisation_secret_arn,
    )
    key = manifest_key("manifests/", "loans", run.run_id)
    s3.put_object(Bucket=stack.data_bucket, Key=key, Body=json.dumps(manifest).encode())
    output = prepare.run(f"s3://{stack.data_bucket}/{key}", s3, boto3.client("secretsmanager", region_name=REGION))
    data, manifest_path = target / "prepared" / "data.csv", target / "prepared" / "manifest.json"
    data.parent.mkdir(parents=True)
    bucket, _, data_key = output["output"]["data_uri"][5:].partition("/")
    data.write_bytes(s3.get_object(Bucket=bucket, Key=data_key)["Body"].read())
    manifest_path.write_text(json.dumps(output), encoding="utf-8")
    return data, manifest_path


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Train, evaluate and baseline once on the prepared synthetic data; every test reads the results."""
    from moto import mock_aws

    from closedloop_ops import moto_ext

    tmp_path = tmp_path_factory.mktemp("steps")
    moto_ext.install()
    with pytest.MonkeyPatch.context() as patch, mock_aws():
        for name, value in {**stack_env(), "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
            patch.setenv(name, value)
        stack = provision(stack_env())
        # a fixed pseudonymisation key: customer ids, hence the held-out split, are the same every run
        boto3.client("secretsmanager", region_name=REGION).put_secret_value(
            SecretId=stack.settings.pseudonymisation_secret_arn, SecretString=DEMO_KEY
        )
        data, manifest = prepared_synthetic_data(stack, tmp_path)
    model_dir = tmp_path / "model"
    lineage = [
        *("--lineage-trigger", "=alarm", "--lineage-prep-run-id", "=", "--lineage-prep-code-version", "=abc"),
        *("--lineage-trigger-reason", "=-Threshold Crossed: [0.31 (27/11/26)] > 0.2; " + "x" * 900),
    ]
    run_step("train.py", "--train", str(data), "--manifest", str(manifest), "--model-dir", str(model_dir), *lineage)
    # SageMaker hands the next steps model.tar.gz, not the directory
    archive = tmp_path / "artifacts" / "model.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            tar.add(path, arcname=path.relative_to(model_dir).as_posix())
    run_step(
        "evaluate.py", "--model", str(archive.parent), "--data", str(data.parent),
        "--output", str(tmp_path / "evaluation"),
    )  # fmt: skip
    run_step("baseline.py", "--model", str(archive), "--data", str(data), "--output", str(tmp_path / "baseline"))
    read = lambda path: json.loads((tmp_path / path).read_text(encoding="utf-8"))  # noqa: E731
    yield {
        "tmp": tmp_path,
        "data": data,
        "model_dir": model_dir,
        "meta": read("model/model_meta.json"),
        "evaluation": read("evaluation/evaluation.json"),
        "bias": read("evaluation/bias.json"),
        "lineage": read("evaluation/lineage.json"),
        "baseline": read("baseline/baseline.json"),
    }


def test_the_model_beats_the_majority_class_on_held_out_rows_and_reports_in_the_contract_format(
    outputs: dict[str, Any],
) -> None:
    evaluation = outputs["evaluation"]
    metrics = {name: entry["value"] for name, entry in evaluation["binary_classification_metrics"].items()}
    # Then: better than always answering the majority class, on rows it never saw
    assert metrics["accuracy"] > evaluation["majority_class_accuracy"]
    assert metrics["auc"] > 0.7
    assert evaluation["rows_evaluated"] == outputs["meta"]["split"]["rows_test"] > 500
    # and the report is `closedloop.evaluation/1`
    assert evaluation["schema"] == "closedloop.evaluation/1"
    assert evaluation["label"] == "approved"
    assert set(metrics) == {"auc", "f1", "accuracy", "precision", "recall"}
    assert all(0 <= value <= 1 for value in metrics.values())
    importance = evaluation["feature_importance"]
    assert set(importance) == set(outputs["meta"]["feature_order"])
    assert sum(importance.values()) == pytest.approx(1.0, abs=1e-3)
    assert max(importance, key=importance.get) in {"loan_amount", "income", "late_payments", "credit_history_years"}


def test_features_exclude_identifiers_free_text_and_the_protected_attribute(outputs: dict[str, Any]) -> None:
    meta = outputs["meta"]
    assert meta["feature_order"] == [
        "age",
        "income",
        "loan_amount",
        "loan_term_months",
        "credit_history_years",
        "existing_debt",
        "late_payments",
        "employment_years",
        "purpose",
        "home_ownership",
    ]
    assert meta["protected_attribute"] == "group" and meta["split"]["key"] == "customer_id"
    # the version the model records is the one the pipeline registers (CommitId): all step scripts
    digest = hashlib.sha256()
    for path in sorted(STEPS.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    assert meta["code_version"] == digest.hexdigest()
    assert sorted((outputs["model_dir"] / "code").iterdir()) == [
        outputs["model_dir"] / "code" / "common.py",
        outputs["model_dir"] / "code" / "inference.py",
    ]


def test_the_bias_report_is_clarify_post_training_format(outputs: dict[str, Any]) -> None:
    section = outputs["bias"]["post_training_bias_metrics"]
    assert (outputs["bias"]["version"], section["label"], section["label_value_or_threshold"]) == (
        "1.0",
        "approved",
        "1",
    )
    [facet] = section["facets"]["group"]
    assert facet["value_or_threshold"] == "B"  # A is the majority (advantaged) group
    values = {m["name"]: m["value"] for m in facet["metrics"]}
    rates = outputs["bias"]["positive_rates"]
    assert values["DPPL"] == pytest.approx(rates["A"] - rates["B"], abs=1e-5)
    assert values["DI"] == pytest.approx(rates["B"] / rates["A"], abs=1e-5)


def test_the_baseline_has_the_drift_monitors_format(outputs: dict[str, Any]) -> None:
    baseline = outputs["baseline"]
    assert baseline["schema"] == "closedloop.baseline/1"
    assert baseline["rows"] == outputs["meta"]["split"]["rows_train"]
    assert (baseline["label"], baseline["protected_attribute"], baseline["favourable_label"]) == (
        "approved",
        "group",
        "1",
    )
    assert baseline["feature_order"] == outputs["meta"]["feature_order"]
    income = baseline["features"]["income"]
    assert income["type"] == "numeric" and len(income["quantile_edges"]) == 11
    assert len(income["bin_proportions"]) == 10 and sum(income["bin_proportions"]) == pytest.approx(1.0, abs=1e-5)
    assert income["sample"] == sorted(income["sample"]) and len(income["sample"]) == 1000
    assert income["missing_rate"] == 0 and income["mean"] > 0 and income["std"] > 0
    purpose = baseline["features"]["purpose"]
    assert purpose["type"] == "categorical" and sum(purpose["frequencies"].values()) == pytest.approx(1.0, abs=1e-5)
    prediction = baseline["prediction"]
    assert 0 < prediction["positive_rate"] < 1
    assert len(prediction["score_quantile_edges"]) == 11 and len(prediction["score_bin_proportions"]) == 10
    assert prediction["score_sample"] == sorted(prediction["score_sample"])
    bias = baseline["bias"]
    assert (bias["advantaged_group"], bias["disadvantaged_group"]) == ("A", "B")
    assert bias["dppl"] == pytest.approx(bias["positive_rates"]["A"] - bias["positive_rates"]["B"], abs=1e-5)


def test_lineage_passed_to_training_reaches_the_registry_safely(outputs: dict[str, Any]) -> None:
    # Given a trigger reason longer than a Processing argument may be, starting with "-", full of brackets
    lineage = outputs["lineage"]
    assert outputs["meta"]["lineage"]["trigger_reason"].startswith("-Threshold Crossed: [0.31")
    # Then the registry gets at most 256 safe characters, and every key it needs
    assert lineage["trigger_reason"].startswith("-Threshold Crossed: 0.31 27/11/26 0.2 x")
    assert len(lineage["trigger_reason"]) == 256
    assert (lineage["dataset"], lineage["prep_run_id"], lineage["trigger"]) == ("loans", "none", "alarm")
    assert lineage["code_version"] == f"train={outputs['meta']['code_version']} prep=abc"
    assert set(lineage) == {
        "code_version", "dataset", "prep_run_id", "prepared_data", "prepared_manifest", "trigger", "trigger_reason",
    }  # fmt: skip


def serving(model_dir: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("closedloop_served_inference", model_dir / "code" / "inference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_archived_inference_code_serves_the_contract(outputs: dict[str, Any]) -> None:
    model_dir: Path = outputs["model_dir"]
    inference = serving(model_dir)
    model = inference.model_fn(str(model_dir))
    # a request: the feature_order columns, optionally one extra column with the group
    row = "34,51000.0,12000.0,36,8,4000.0,0,5,car,rent"
    for body in (f"{row}\n{row},B", f"{row},A"):
        rows = inference.input_fn(body.encode(), "text/csv")
        text, content_type = inference.output_fn(inference.predict_fn(rows, model), "text/csv")
        scores = [float(line) for line in text.splitlines()]
        assert content_type == "text/csv" and len(scores) == len(rows)
        assert all(0.0 <= s <= 1.0 for s in scores)
    # a row of the wrong width is refused with a reason
    with pytest.raises(ValueError, match="fields"):
        inference.predict_fn(inference.input_fn("34,51000.0", "text/csv"), model)


def test_evaluating_on_other_data_is_refused(outputs: dict[str, Any]) -> None:
    # Given the same model and only half of its data
    data: Path = outputs["data"]
    lines = data.read_text(encoding="utf-8").splitlines()
    other = outputs["tmp"] / "other.csv"
    other.write_text("\n".join(lines[: len(lines) // 2]) + "\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(STEPS / "evaluate.py"), "--model", str(outputs["model_dir"]), "--data", str(other),
         "--output", str(outputs["tmp"] / "nope")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "not the data the model was trained on" in done.stderr


def test_the_drift_monitor_reads_what_the_pipeline_writes(outputs: dict[str, Any]) -> None:
    # The drift route's own models of baseline.json and bias.json accept the step outputs
    from closedloop.drift.baseline import Baseline, BiasReport

    baseline = Baseline.model_validate(outputs["baseline"])
    assert baseline.feature_order == outputs["meta"]["feature_order"]
    assert baseline.prediction is not None and baseline.bias is not None
    found = BiasReport.model_validate(outputs["bias"]).dppl("group")
    # the same held-out rows, the same DPPL
    assert found is not None and found[1] == pytest.approx(outputs["baseline"]["bias"]["dppl"], abs=1e-5)


def test_print_the_demo_models_numbers(outputs: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    # Not an assertion on quality: the numbers of the demo model, for whoever runs `pytest -s -k numbers`
    evaluation, bias = outputs["evaluation"], outputs["bias"]["post_training_bias_metrics"]["facets"]["group"][0]
    figures = {name: entry["value"] for name, entry in evaluation["binary_classification_metrics"].items()}
    figures |= {m["name"]: m["value"] for m in bias["metrics"]}
    figures |= {"majority": evaluation["majority_class_accuracy"], "rows": evaluation["rows_evaluated"]}
    with capsys.disabled():
        print(f"\ndemo model (seed {SEED}, {ROWS} rows): {json.dumps(figures)}")
    assert figures["rows"] == outputs["meta"]["split"]["rows_test"]
