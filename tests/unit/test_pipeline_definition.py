"""The checked-in pipeline definition (`pipelines/definition.json`, written by `make pipeline`): its steps, wired.

These tests read the file; they never need the sagemaker SDK (it lives in `.venv-pipeline`).
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

from closedloop import lineage
from closedloop.training.requests import build_start_pipeline_request

DEFINITION = Path(__file__).resolve().parents[2] / "pipelines" / "definition.json"
ROUTE_PARAMETERS = {
    lineage.PARAM_INPUT_DATA,
    lineage.PARAM_PREPARED_MANIFEST,
    lineage.PARAM_TRIGGER,
    lineage.PARAM_TRIGGER_REASON,
    lineage.PARAM_PREP_RUN_ID,
    lineage.PARAM_CODE_VERSION,
    lineage.PARAM_MODEL_GROUP,
}


@cache
def definition() -> dict[str, Any]:
    assert DEFINITION.is_file(), f"{DEFINITION} is missing: run `make pipeline` (make test does it first)"
    document: dict[str, Any] = json.loads(DEFINITION.read_text(encoding="utf-8"))
    return document


def steps() -> dict[str, dict[str, Any]]:
    return {step["Name"]: step for step in definition()["Steps"]}


def references(value: Any) -> set[str]:
    """Every `Get` path used inside a value (parameters, step properties, execution variables)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "Get" and isinstance(item, str):
                found.add(item)
            else:
                found |= references(item)
    elif isinstance(value, list):
        for item in value:
            found |= references(item)
    return found


DATASET_OUTPUT = {"Get": "Steps.Dataset.ProcessingOutputConfig.Outputs['dataset'].S3Output.S3Uri"}


def test_the_pipeline_has_its_steps_of_their_types() -> None:
    assert {name: step["Type"] for name, step in steps().items()} == {
        "Dataset": "Processing",
        "Train": "Training",
        "Evaluate": "Processing",
        "Baseline": "Processing",
        "ClarifyInputs": "Processing",
        "ClarifyModel": "Model",
        "DataBias": "ClarifyCheck",
        "ModelBias": "ClarifyCheck",
        "ModelExplainability": "ClarifyCheck",
        "Register": "RegisterModel",
    }


def test_it_declares_every_parameter_the_routes_set() -> None:
    declared = {p["Name"] for p in definition()["Parameters"]}
    assert declared >= ROUTE_PARAMETERS
    # and a start request built by the routes names no parameter the pipeline lacks
    request = build_start_pipeline_request(
        pipeline_name="closedloop-training",
        input_data_uri="s3://d/prepared/loans/r/data.csv",
        prepared_manifest_uri="s3://d/prepared/loans/r/manifest.json",
        prep_run_id="r",
        code_version="c",
        trigger="upload",
        trigger_reason="new data",
        model_group="closedloop-loans",
        client_request_token="t" * 64,
    )
    assert {p["Name"] for p in request["PipelineParameters"]} <= declared
    # the data and manifest have no default: a start without them fails instead of training on nothing
    required = {p["Name"] for p in definition()["Parameters"] if "DefaultValue" not in p}
    assert required == {lineage.PARAM_INPUT_DATA, lineage.PARAM_PREPARED_MANIFEST}


def test_the_dataset_step_builds_the_training_set_from_the_runs_manifest() -> None:
    dataset = steps()["Dataset"]["Arguments"]
    inputs = {i["InputName"]: i["S3Input"]["S3Uri"] for i in dataset["ProcessingInputs"]}
    assert inputs["manifest"] == {"Get": f"Parameters.{lineage.PARAM_PREPARED_MANIFEST}"}
    assert inputs["code"].endswith("/dataset.py")
    # the manifest is an input, not an argument (a Processing job's arguments hold 256 characters)
    arguments = dataset["AppSpecification"]["ContainerArguments"]
    assert arguments == [
        "--manifest",
        "/opt/ml/processing/manifest/manifest.json",
        "--output",
        "/opt/ml/processing/dataset",
    ]
    assert [o["OutputName"] for o in dataset["ProcessingOutputConfig"]["Outputs"]] == ["dataset"]


def test_training_reads_the_dataset_and_the_manifest_in_script_mode() -> None:
    train = steps()["Train"]["Arguments"]
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in train["InputDataConfig"]}
    assert channels == {
        "train": DATASET_OUTPUT,
        "manifest": {"Get": f"Parameters.{lineage.PARAM_PREPARED_MANIFEST}"},
    }
    hyper = {k: json.loads(v) for k, v in train["HyperParameters"].items() if isinstance(v, str)}
    assert hyper["sagemaker_program"] == "train.py"
    assert hyper["sagemaker_submit_directory"].endswith("/sourcedir.tar.gz")
    assert "sagemaker-scikit-learn:1.4-2-cpu-py3" in train["AlgorithmSpecification"]["TrainingImage"]
    assert "Execution.PipelineExecutionId" in references(train["OutputDataConfig"])


def test_evaluate_and_baseline_score_the_trained_model_on_the_same_data() -> None:
    for name, output in (("Evaluate", "evaluation"), ("Baseline", "baseline"), ("ClarifyInputs", "clarify")):
        arguments = steps()[name]["Arguments"]
        inputs = {i["InputName"]: i["S3Input"]["S3Uri"] for i in arguments["ProcessingInputs"]}
        assert inputs["model"] == {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}
        assert inputs["data"] == DATASET_OUTPUT
        assert inputs["code"].endswith(f"/{ {'ClarifyInputs': 'clarify_inputs'}.get(name, name.lower()) }.py")
        assert [o["OutputName"] for o in arguments["ProcessingOutputConfig"]["Outputs"]] == [output]
        script = {"ClarifyInputs": "clarify_inputs"}.get(name, name.lower())
        entry = arguments["AppSpecification"]["ContainerEntrypoint"]
        assert entry == ["python3", f"/opt/ml/processing/input/code/{script}.py"]
    evaluate = steps()["Evaluate"]
    assert {f["PropertyFileName"]: f["FilePath"] for f in evaluate["PropertyFiles"]} == {
        "Evaluation": "evaluation.json",
        "Lineage": "lineage.json",
    }
    # no pipeline parameter is a Processing job argument: those are limited to 256 characters
    for name in ("Evaluate", "Baseline", "ClarifyInputs"):
        arguments = steps()[name]["Arguments"]["AppSpecification"]["ContainerArguments"]
        assert not {ref for ref in references(arguments) if ref.startswith("Parameters.")}


def test_the_lineage_parameters_travel_with_the_model_as_hyperparameters() -> None:
    hyper = steps()["Train"]["Arguments"]["HyperParameters"]
    passed = {name: value["Std:Join"]["Values"] for name, value in hyper.items() if name.startswith("lineage-")}
    assert passed == {
        "lineage-prepared-manifest": ["=", {"Get": f"Parameters.{lineage.PARAM_PREPARED_MANIFEST}"}],
        "lineage-prepared-data": ["=", {"Get": f"Parameters.{lineage.PARAM_INPUT_DATA}"}],
        "lineage-prep-run-id": ["=", {"Get": f"Parameters.{lineage.PARAM_PREP_RUN_ID}"}],
        "lineage-prep-code-version": ["=", {"Get": f"Parameters.{lineage.PARAM_CODE_VERSION}"}],
        "lineage-trigger": ["=", {"Get": f"Parameters.{lineage.PARAM_TRIGGER}"}],
        "lineage-trigger-reason": ["=", {"Get": f"Parameters.{lineage.PARAM_TRIGGER_REASON}"}],
    }


def test_register_points_the_version_at_its_evidence_and_lineage() -> None:
    register = steps()["Register"]
    arguments = register["Arguments"]
    assert arguments["ModelApprovalStatus"] == "PendingManualApproval"
    assert arguments["ModelPackageGroupName"] == {"Get": f"Parameters.{lineage.PARAM_MODEL_GROUP}"}
    metrics = arguments["ModelMetrics"]
    quality = metrics["ModelQuality"]["Statistics"]["S3Uri"]["Std:Join"]["Values"]
    baseline = arguments["DriftCheckBaselines"]["ModelDataQuality"]["Statistics"]["S3Uri"]["Std:Join"]["Values"]
    assert quality[-1] == "evaluation.json" and "Steps.Evaluate" in str(quality[0])
    assert baseline[-1] == "baseline.json" and "Steps.Baseline" in str(baseline[0])
    # bias and explainability: Clarify's own reports (analysis.json), as metrics and as drift-check baselines
    assert {name: report["S3Uri"] for name, report in metrics["Bias"].items()} == {
        "PreTrainingReport": {"Get": "Steps.DataBias.CalculatedBaselineConstraints"},
        "PostTrainingReport": {"Get": "Steps.ModelBias.CalculatedBaselineConstraints"},
    }
    assert metrics["Explainability"]["Report"]["S3Uri"] == {
        "Get": "Steps.ModelExplainability.CalculatedBaselineConstraints"
    }
    drift = arguments["DriftCheckBaselines"]
    assert drift["Bias"]["PreTrainingConstraints"]["S3Uri"] == {
        "Get": "Steps.DataBias.BaselineUsedForDriftCheckConstraints"
    }
    assert drift["Bias"]["PostTrainingConstraints"]["S3Uri"] == {
        "Get": "Steps.ModelBias.BaselineUsedForDriftCheckConstraints"
    }
    assert drift["Explainability"]["Constraints"]["S3Uri"] == {
        "Get": "Steps.ModelExplainability.BaselineUsedForDriftCheckConstraints"
    }
    for section, check in (("Bias", "model-bias"), ("Explainability", "explainability")):
        config = drift[section]["ConfigFile"]["S3Uri"]["Std:Join"]["Values"]
        assert config[1:] == [check, "config", "analysis_config.json"] and "Steps.ClarifyInputs" in str(config[0])
    metadata = arguments["CustomerMetadataProperties"]
    assert set(metadata) == {
        lineage.PREPARED_MANIFEST,
        lineage.PREPARED_DATA,
        lineage.CODE_VERSION,
        lineage.PIPELINE_EXECUTION,
        lineage.TRIGGER,
        lineage.TRIGGER_REASON,
        lineage.PREP_RUN_ID,
        lineage.DATASET,
        lineage.FEATURE_DATASET,
    }
    assert metadata[lineage.PIPELINE_EXECUTION] == {"Get": "Execution.PipelineExecutionArn"}
    assert metadata[lineage.DATASET]["Std:JsonGet"]["PropertyFile"] == {"Get": "Steps.Evaluate.PropertyFiles.Lineage"}
    container = arguments["InferenceSpecification"]["Containers"][0]
    assert container["ModelDataUrl"] == {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert container["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"
    assert container["Image"] == steps()["Train"]["Arguments"]["AlgorithmSpecification"]["TrainingImage"]
    assert arguments["InferenceSpecification"]["SupportedContentTypes"] == ["text/csv"]
    assert set(register.get("DependsOn", [])) == {
        "Evaluate",
        "Baseline",
        "DataBias",
        "ModelBias",
        "ModelExplainability",
    }


def test_the_clarify_checks_read_the_runs_own_configuration_and_dataset() -> None:
    # Given the three checks, each with its type, and the model checks with the model the pipeline created
    expected = {"DataBias": "DATA_BIAS", "ModelBias": "MODEL_BIAS", "ModelExplainability": "MODEL_EXPLAINABILITY"}
    for name, check_type in expected.items():
        step = steps()[name]
        assert step["CheckType"] == check_type
        # compute and register a new baseline; the approval gate judges the figures, no run fails on them
        assert (step["SkipCheck"], step["RegisterNewBaseline"], step["FailOnViolation"]) == (True, True, False)
        assert step["ModelPackageGroupName"] == {"Get": f"Parameters.{lineage.PARAM_MODEL_GROUP}"}
        arguments = step["Arguments"]
        assert "sagemaker-clarify-processing" in arguments["AppSpecification"]["ImageUri"]
        inputs = {i["InputName"]: i["S3Input"] for i in arguments["ProcessingInputs"]}
        check = {"DataBias": "data-bias", "ModelBias": "model-bias"}.get(name, "explainability")
        # the line's label, facet and headers: the configuration ClarifyInputs wrote for this run
        config = inputs["analysis_config"]["S3Uri"]["Std:Join"]["Values"]
        assert config[1:] == [check, "config", "analysis_config.json"]
        assert config[0] == {"Get": "Steps.ClarifyInputs.ProcessingOutputConfig.Outputs['clarify'].S3Output.S3Uri"}
        assert inputs["analysis_config"]["LocalPath"] == "/opt/ml/processing/input/config"
        assert inputs["dataset"]["S3Uri"]["Std:Join"]["Values"][1:] == [check, "dataset"]
        (output,) = arguments["ProcessingOutputConfig"]["Outputs"]
        assert output["OutputName"] == "analysis_result"
        assert "Execution.PipelineExecutionId" in references(output["S3Output"]["S3Uri"])
        if name == "DataBias":
            assert "ModelName" not in step
        else:
            assert step["ModelName"] == {"Get": "Steps.ClarifyModel.ModelName"}
    model = steps()["ClarifyModel"]["Arguments"]["PrimaryContainer"]
    assert model["ModelDataUrl"] == {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}
    assert model["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"


def test_every_referenced_parameter_is_declared() -> None:
    declared = {p["Name"] for p in definition()["Parameters"]}
    used = {ref.split(".", 1)[1] for ref in references(definition()["Steps"]) if ref.startswith("Parameters.")}
    assert used <= declared
    assert {lineage.PARAM_INPUT_DATA, lineage.PARAM_MODEL_GROUP} <= used


def steps_code_version() -> str:
    """SHA-256 over pipelines/steps/*.py (name and content, sorted) — the training code's version."""
    digest = hashlib.sha256()
    for path in sorted((DEFINITION.parents[1] / "pipelines" / "steps").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def test_the_definition_is_for_the_step_code_of_this_checkout() -> None:
    version = steps_code_version()
    register = steps()["Register"]["Arguments"]
    assert register["MetadataProperties"]["CommitId"] == version, (
        "pipelines/definition.json is stale: run `make pipeline` and commit the result"
    )
    submit = json.loads(steps()["Train"]["Arguments"]["HyperParameters"]["sagemaker_submit_directory"])
    assert f"/code/{version[:16]}/sourcedir.tar.gz" in submit
    assert register["MetadataProperties"]["GeneratedBy"] == {"Get": "Execution.PipelineExecutionArn"}
