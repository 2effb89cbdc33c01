"""Clarify's three checks on a model the real Train step fits: ClarifyInputs writes each check's
configuration and dataset, the local Clarify computes `analysis.json` (smclarify, shap), and the
result has the shape of AWS's documented sample and the figures of the step's own bias report."""

from __future__ import annotations

import json
import tarfile
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from integration.test_pipeline_steps import DEMO_KEY, prepared_synthetic_data, run_step

from closedloop.approval.evidence import parse_bias, parse_explainability
from closedloop_ops.local import clarify
from support.stack import REGION, provision, stack_env

CHECKS = {
    "data-bias": clarify.DATA_BIAS,
    "model-bias": clarify.MODEL_BIAS,
    "explainability": clarify.MODEL_EXPLAINABILITY,
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Train on prepared synthetic loans, write the Clarify inputs, run the three checks through S3 (moto)."""
    from moto import mock_aws

    from closedloop_ops import moto_ext

    tmp = tmp_path_factory.mktemp("clarify")
    moto_ext.install()
    with pytest.MonkeyPatch.context() as patch, mock_aws():
        for name, value in {**stack_env(), "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
            patch.setenv(name, value)
        stack = provision(stack_env())
        s3 = boto3.client("s3", region_name=REGION)
        boto3.client("secretsmanager", region_name=REGION).put_secret_value(
            SecretId=stack.settings.pseudonymisation_secret_arn, SecretString=DEMO_KEY
        )
        data, manifest = prepared_synthetic_data(stack, tmp)
        model_dir = tmp / "model"
        run_step("train.py", "--train", str(data), "--manifest", str(manifest), "--model-dir", str(model_dir))
        archive = tmp / "model.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for path in sorted(model_dir.rglob("*")):
                tar.add(path, arcname=path.relative_to(model_dir).as_posix())
        run_step("evaluate.py", "--model", str(archive), "--data", str(data), "--output", str(tmp / "evaluation"))
        written = run_step(
            "clarify_inputs.py", "--model", str(archive), "--data", str(data), "--output", str(tmp / "in")
        )
        bucket = stack.data_bucket
        s3.put_object(Bucket=bucket, Key="run/model.tar.gz", Body=archive.read_bytes())
        for path in sorted((tmp / "in").rglob("*")):
            if path.is_file():
                s3.put_object(
                    Bucket=bucket, Key=f"run/in/{path.relative_to(tmp / 'in').as_posix()}", Body=path.read_bytes()
                )
        reports: dict[str, Any] = {}
        seconds: dict[str, float] = {}
        for check, check_type in CHECKS.items():
            started = time.perf_counter()
            uri, _ = clarify.run_check(
                s3,
                check_type=check_type,
                config_uri=f"s3://{bucket}/run/in/{check}/config/analysis_config.json",
                dataset_uri=f"s3://{bucket}/run/in/{check}/dataset",
                output_uri=f"s3://{bucket}/run/out/{check}",
                model_data_url=f"s3://{bucket}/run/model.tar.gz",
            )
            seconds[check] = time.perf_counter() - started
            assert uri == f"s3://{bucket}/run/out/{check}/analysis.json"
            key = uri.removeprefix(f"s3://{bucket}/")
            reports[check] = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    yield {
        "tmp": tmp,
        "written": written,
        "reports": reports,
        "seconds": seconds,
        "meta": json.loads((model_dir / "model_meta.json").read_text(encoding="utf-8")),
        "bias": json.loads((tmp / "evaluation" / "bias.json").read_text(encoding="utf-8")),
        "configs": {
            check: json.loads((tmp / "in" / check / "config" / "analysis_config.json").read_text(encoding="utf-8"))
            for check in CHECKS
        },
    }


def test_clarify_inputs_name_the_lines_label_facet_and_features(run: dict[str, Any]) -> None:
    # Given the model's own metadata, When ClarifyInputs writes the configurations
    meta, configs = run["meta"], run["configs"]
    # Then every check's headers are the label, the model's features and the protected attribute
    for config in configs.values():
        assert config["headers"] == [meta["label"], *meta["feature_order"], meta["protected_attribute"]]
        assert config["label"] == meta["label"]
        assert config["excluded_columns"] == [meta["protected_attribute"]]
    assert configs["model-bias"]["facet"] == [{"name_or_index": "group", "value_or_threshold": ["B"]}]
    assert configs["model-bias"]["label_values_or_threshold"] == ["1"]
    assert set(configs["explainability"]["methods"]) == {"shap", "report"}
    assert run["written"] == {"data-bias": meta["split"]["rows_train"], "model-bias": meta["split"]["rows_test"],
                              "explainability": 300}  # fmt: skip


def test_bias_reports_have_the_documented_shape(run: dict[str, Any]) -> None:
    # Given the pre- and post-training reports
    pre = run["reports"]["data-bias"]["pre_training_bias_metrics"]
    post = run["reports"]["model-bias"]["post_training_bias_metrics"]
    # Then: {"label", "label_value_or_threshold", "facets": {facet: [{"value_or_threshold", "metrics": [...]}]}}
    for section in (pre, post):
        assert set(section) == {"label", "label_value_or_threshold", "facets"}
        assert section["label"] == "approved" and section["label_value_or_threshold"] == "1"
        (entry,) = section["facets"]["group"]
        assert entry["value_or_threshold"] == "B"
        for metric in entry["metrics"]:
            assert {"name", "description", "value"} <= set(metric)
    names = lambda section: {m["name"] for m in section["facets"]["group"][0]["metrics"]}  # noqa: E731
    assert {"CI", "DPL", "KL", "JS", "LP", "TVD", "KS", "CDDL"} == names(pre)
    # the SDK's post-training list, and smclarify's SD and GE besides
    assert {"DPPL", "DI", "DCA", "DCR", "RD", "DAR", "DRR", "AD", "CDDPL", "TE", "FT"} <= names(post)
    assert set(run["reports"]["data-bias"]) == {"version", "pre_training_bias_metrics"}


def test_post_training_di_and_dppl_agree_with_the_evaluate_steps_bias_report(run: dict[str, Any]) -> None:
    # Given the same held-out rows, the same model and the same threshold
    (clarify_facet,) = parse_bias(run["reports"]["model-bias"])
    (step_facet,) = parse_bias(run["bias"])
    # Then Clarify's definitions give the figures the step computes itself
    assert clarify_facet.di == pytest.approx(step_facet.di, abs=1e-6)
    assert clarify_facet.dppl == pytest.approx(step_facet.dppl, abs=1e-6)


def test_explanations_have_the_documented_shape_and_rank_the_models_features(run: dict[str, Any]) -> None:
    # Given the explainability report
    report = run["reports"]["explainability"]
    label0 = report["explanations"]["kernel_shap"]["label0"]
    # Then one global SHAP value per feature the model reads, none for the label or the facet
    assert set(label0) == {"global_shap_values", "expected_value"}
    assert set(label0["global_shap_values"]) == set(run["meta"]["feature_order"])
    assert all(value >= 0 for value in label0["global_shap_values"].values())  # mean |SHAP|
    assert 0 < label0["expected_value"] < 1  # the mean favourable score over the baseline
    top = parse_explainability(report)
    assert top[0].mean_abs_shap >= top[-1].mean_abs_shap > 0 or top[-1].mean_abs_shap == 0


def test_the_checks_are_fast_enough_for_the_demo(run: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    # The demo runs the pipeline several times: the three checks together stay within a few seconds
    with capsys.disabled():
        print("\nclarify check seconds:", {k: round(v, 2) for k, v in run["seconds"].items()})
    assert sum(run["seconds"].values()) < 20


def test_kernel_shap_scores_the_model_exactly_as_its_serving_code_does(run: dict[str, Any], tmp_path: Any) -> None:
    # Given the trained model, loaded with the serving code in its archive, and the explained rows
    model = clarify.load_model((run["tmp"] / "model.tar.gz").read_bytes(), tmp_path)
    config = run["configs"]["explainability"]
    text = (run["tmp"] / "in" / "explainability" / "dataset" / "data.csv").read_text(encoding="utf-8")
    dataset = clarify.read_dataset(config, text)
    features = dataset.features
    rows = dataset.matrix(features)[:50]
    # When the perturbed rows are scored from the model's input matrix (no text round trip)
    encoding = clarify._Encoding.of(features, rows)
    direct = model.scores_of_matrix(features, encoding.model_input(encoding.encode(rows)))
    # Then the scores are the serving code's, for the same rows
    assert direct is not None
    assert direct.tolist() == pytest.approx(model.scores(rows).tolist(), abs=1e-12)
