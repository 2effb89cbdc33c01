#!/usr/bin/env python3
"""Build the closedloop training pipeline with the SageMaker Python SDK (v3) and write its JSON definition.

    Dataset (point-in-time from the line's feature group) ──▶ Train ──▶ Evaluate, Baseline,
    ClarifyInputs ──▶ ClarifyModel, DataBias, ModelBias, ModelExplainability ──▶ Register
    (PendingManualApproval, with the Clarify reports as its metrics and drift-check baselines)

Two ways to run it:

* offline, for the local loop, tests and review (`make pipeline`): inside moto, with a placeholder
  role, bucket and region, no credentials needed — `python pipelines/definition.py --offline
  --output pipelines/definition.json`. That file is checked in, so `make demo` needs no SDK;
  `--check pipelines/definition.json` (`make pipeline-check`, and a test in `make test`) fails when
  it is not what the code generates;
* for a deployment: against the real account, so the step code lands in the stack's artifacts
  bucket — `python pipelines/definition.py --role-arn <TrainingPipelineRoleArn> --bucket
  <ArtifactsBucketName> --region <region> --name <ResourcePrefix>-training`, then
  `python -m closedloop_ops.pipeline upsert` (see pipelines/README.md).

The SDK is a build-time dependency only (`requirements/pipeline.txt`, `.venv-pipeline`); nothing
here is imported by a Lambda function. Every parameter name comes from `closedloop.lineage`, so
the routes that start the pipeline and the definition cannot drift apart. The definition is a
function of the code: the same commit generates the same `pipeline.json`.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import functools
import gzip
import hashlib
import io
import json
import logging
import os
import sys
import tarfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from sagemaker.core import image_uris
from sagemaker.core.clarify import BiasConfig, DataConfig, ModelConfig, ModelPredictedLabelConfig, SHAPConfig
from sagemaker.core.drift_check_baselines import DriftCheckBaselines
from sagemaker.core.metadata_properties import MetadataProperties
from sagemaker.core.model_metrics import FileSource, MetricsSource, ModelMetrics
from sagemaker.core.processing import ScriptProcessor
from sagemaker.core.shapes import ProcessingInput, ProcessingOutput, ProcessingS3Input, ProcessingS3Output
from sagemaker.core.workflow.execution_variables import ExecutionVariables
from sagemaker.core.workflow.functions import Join, JsonGet
from sagemaker.core.workflow.parameters import ParameterString
from sagemaker.core.workflow.pipeline_context import PipelineSession
from sagemaker.core.workflow.properties import PropertyFile
from sagemaker.mlops.workflow.check_job_config import CheckJobConfig
from sagemaker.mlops.workflow.clarify_check_step import (
    ClarifyCheckStep,
    DataBiasCheckConfig,
    ModelBiasCheckConfig,
    ModelExplainabilityCheckConfig,
)
from sagemaker.mlops.workflow.model_step import ModelStep
from sagemaker.mlops.workflow.pipeline import Pipeline
from sagemaker.mlops.workflow.retry import (
    SageMakerJobExceptionTypeEnum,
    SageMakerJobStepRetryPolicy,
    StepExceptionTypeEnum,
    StepRetryPolicy,
)
from sagemaker.mlops.workflow.steps import ProcessingStep, TrainingStep
from sagemaker.serve.model_builder import ModelBuilder
from sagemaker.train import ModelTrainer
from sagemaker.train.configs import Compute, InputData, OutputDataConfig, StoppingCondition

from closedloop import lineage

STEPS_DIR = Path(__file__).resolve().parent / "steps"
REPO = STEPS_DIR.parents[1]
# The SDK hashes a step script's *path* with its content into the code's S3 key: the path is given
# relative to the repository (generation runs there), so every checkout generates the same definition.
STEPS_RELATIVE = STEPS_DIR.relative_to(REPO)
SKLEARN_VERSION = "1.4-2"  # one image trains, evaluates and serves: the pickle never crosses versions
OFFLINE_ACCOUNT = "111122223333"
OFFLINE_REGION = "eu-west-1"
PROCESSING = "/opt/ml/processing"

# Step names: the approval gate finds the registered version through the RegisterModel step.
TRAIN, EVALUATE, BASELINE, REGISTER = "Train", "Evaluate", "Baseline", "Register"
DATASET = "Dataset"
# SageMaker Clarify: the run's check inputs, the model Clarify's shadow endpoint serves, the three checks.
CLARIFY_INPUTS, CLARIFY_MODEL = "ClarifyInputs", "ClarifyModel"
DATA_BIAS, MODEL_BIAS, EXPLAINABILITY = "DataBias", "ModelBias", "ModelExplainability"
CLARIFY_CONFIG_INPUT = "/opt/ml/processing/input/config"  # where the Clarify container reads analysis_config.json
HYPERPARAMETERS = {"algorithm": "logistic", "seed": 7, "test-fraction": 0.25, "split-key": "auto"}


@dataclass(frozen=True)
class PipelineConfig:
    """What a deployment decides about the pipeline (everything else is code)."""

    name: str = "closedloop-training"
    role_arn: str = f"arn:aws:iam::{OFFLINE_ACCOUNT}:role/closedloop-TrainingPipelineRole"
    bucket: str = "closedloop-artifacts"
    region: str = OFFLINE_REGION
    model_group: str = "closedloop-models"
    training_instance_type: str = "ml.m5.large"
    processing_instance_type: str = "ml.m5.large"
    inference_instance_type: str = "ml.m5.large"
    max_runtime_s: int = 3600

    @property
    def prefix(self) -> str:
        """Key prefix of everything the pipeline writes: code, models, reports."""
        return f"pipelines/{self.name}"


@dataclass(frozen=True)
class Parameters:
    """The pipeline's parameters; the first seven are the ones routes 2 and 6 set (lineage names)."""

    input_data: Any
    prepared_manifest: Any
    prep_run_id: Any
    prep_code_version: Any
    trigger: Any
    trigger_reason: Any
    model_group: Any
    training_instance: Any
    processing_instance: Any

    @classmethod
    def declare(cls, config: PipelineConfig) -> Parameters:
        return cls(
            input_data=ParameterString(name=lineage.PARAM_INPUT_DATA),
            prepared_manifest=ParameterString(name=lineage.PARAM_PREPARED_MANIFEST),
            prep_run_id=ParameterString(name=lineage.PARAM_PREP_RUN_ID, default_value=""),
            prep_code_version=ParameterString(name=lineage.PARAM_CODE_VERSION, default_value=""),
            trigger=ParameterString(name=lineage.PARAM_TRIGGER, default_value="manual"),
            trigger_reason=ParameterString(name=lineage.PARAM_TRIGGER_REASON, default_value="started by hand"),
            model_group=ParameterString(name=lineage.PARAM_MODEL_GROUP, default_value=config.model_group),
            training_instance=ParameterString(name="TrainingInstanceType", default_value=config.training_instance_type),
            processing_instance=ParameterString(
                name="ProcessingInstanceType", default_value=config.processing_instance_type
            ),
        )

    def all(self) -> list[Any]:
        return list(vars(self).values())

    def lineage(self) -> dict[str, Any]:
        """The parameters recorded as the version's lineage (`train.py` `--lineage-<name>`)."""
        return {
            "prepared-manifest": self.prepared_manifest,
            "prepared-data": self.input_data,
            "prep-run-id": self.prep_run_id,
            "prep-code-version": self.prep_code_version,
            "trigger": self.trigger,
            "trigger-reason": self.trigger_reason,
        }


@functools.cache
def code_version() -> str:
    """The training code's version: SHA-256 over the step scripts, as `train.code_version` computes it."""
    digest = hashlib.sha256()
    for path in sorted(STEPS_DIR.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def source_bundle() -> bytes:
    """The training step's `sourcedir.tar.gz`: every step script, byte-for-byte the same for the same code."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped, tarfile.open(fileobj=zipped, mode="w") as tar:
        for path in sorted(STEPS_DIR.glob("*.py")):
            info = tarfile.TarInfo(path.name)
            body = path.read_bytes()
            info.size, info.mtime, info.mode = len(body), 0, 0o644
            tar.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


def upload_source(session: Any, config: PipelineConfig, version: str) -> str:
    """Upload the training code under a content-addressed key; returns its S3 URI."""
    key = f"{config.prefix}/code/{version[:16]}/sourcedir.tar.gz"
    session.boto_session.client("s3").put_object(Bucket=config.bucket, Key=key, Body=source_bundle())
    return f"s3://{config.bucket}/{key}"


def quiet_sdk() -> None:
    """The SDK narrates every default it applies and resets its loggers' levels as it goes; what it
    pops from the definition here is by design, so only errors are worth a line."""
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore", message="Running within a PipelineSession")


def execution_uri(config: PipelineConfig, *parts: str) -> Any:
    """`s3://<bucket>/pipelines/<name>/executions/<execution id>/<parts…>`."""
    return Join(
        on="/",
        values=[f"s3://{config.bucket}/{config.prefix}/executions", ExecutionVariables.PIPELINE_EXECUTION_ID, *parts],
    )


def throttling_retries() -> StepRetryPolicy:
    return StepRetryPolicy(
        exception_types=[StepExceptionTypeEnum.THROTTLING, StepExceptionTypeEnum.SERVICE_FAULT],
        interval_seconds=10,
        backoff_rate=2.0,
        max_attempts=5,
    )


def job_retries() -> list[Any]:
    """Capacity and internal errors of a job are retried by the pipeline; an algorithm error is not."""
    return [
        SageMakerJobStepRetryPolicy(
            exception_types=[
                SageMakerJobExceptionTypeEnum.CAPACITY_ERROR,
                SageMakerJobExceptionTypeEnum.INTERNAL_ERROR,
                SageMakerJobExceptionTypeEnum.RESOURCE_LIMIT,
            ],
            interval_seconds=60,
            backoff_rate=2.0,
            max_attempts=3,
        ),
        throttling_retries(),
    ]


def train_step(
    config: PipelineConfig, session: Any, params: Parameters, image: str, version: str, data: Any
) -> TrainingStep:
    """Script mode of the scikit-learn container: `sagemaker_program` from `sagemaker_submit_directory`;
    `data` is the training set (the Dataset step's output)."""
    hyperparameters = {name: json.dumps(value) for name, value in HYPERPARAMETERS.items()}
    trainer = ModelTrainer(
        training_image=image,
        role=config.role_arn,
        sagemaker_session=session,
        base_job_name=f"{config.name}-train",
        compute=Compute(instance_type=params.training_instance, instance_count=1, volume_size_in_gb=30),
        stopping_condition=StoppingCondition(max_runtime_in_seconds=config.max_runtime_s),
        hyperparameters={
            "sagemaker_program": json.dumps("train.py"),
            "sagemaker_submit_directory": json.dumps(upload_source(session, config, version)),
            "sagemaker_region": json.dumps(config.region),
            "sagemaker_container_log_level": "20",
            **hyperparameters,
            # Lineage travels with the model: hyperparameter values may be 2,500 characters long
            # (a trigger reason can be 1,000), a Processing job's arguments only 256. The "=" keeps
            # a value from ever looking like an option.
            **{f"lineage-{name}": Join(on="", values=["=", value]) for name, value in params.lineage().items()},
        },
        output_data_config=OutputDataConfig(s3_output_path=execution_uri(config, "train")),
        input_data_config=[
            InputData(channel_name="train", data_source=data, content_type="text/csv"),
            InputData(channel_name="manifest", data_source=params.prepared_manifest, content_type="application/json"),
        ],
    )
    return TrainingStep(
        name=TRAIN,
        step_args=trainer.train(),
        description="Fit the model on the prepared data; hold out a share of it by a keyed hash",
        retry_policies=job_retries(),
    )


def script_processor(
    config: PipelineConfig, session: Any, params: Parameters, image: str, name: str
) -> ScriptProcessor:
    """A step script's Processing job: `python3` in the scikit-learn image, as the pipeline's role."""
    return ScriptProcessor(
        image_uri=image,
        command=["python3"],
        role=config.role_arn,
        instance_count=1,
        instance_type=params.processing_instance,
        max_runtime_in_seconds=config.max_runtime_s,
        sagemaker_session=session,
        base_job_name=f"{config.name}-{name.lower()}",
    )


def processing_step(
    config: PipelineConfig,
    session: Any,
    params: Parameters,
    image: str,
    *,
    name: str,
    script: str,
    output: str,
    model_data: Any,
    arguments: list[Any],
    description: str,
    property_files: list[PropertyFile] | None = None,
    data: Any = None,
) -> ProcessingStep:
    """A step script in a Processing job: the model and the data (`data`, else the prepared data) in, one
    output directory out.

    Paths are passed as arguments (not left to the scripts' defaults), so a local runner can map them.
    """
    processor = script_processor(config, session, params, image, name)

    def s3_input(input_name: str, uri: Any) -> ProcessingInput:
        return ProcessingInput(
            input_name=input_name,
            s3_input=ProcessingS3Input(
                s3_uri=uri,
                local_path=f"{PROCESSING}/{input_name}",
                s3_data_type="S3Prefix",
                s3_input_mode="File",
                s3_data_distribution_type="FullyReplicated",
            ),
        )

    paths = ["--model", f"{PROCESSING}/model", "--data", f"{PROCESSING}/data", "--output", f"{PROCESSING}/{output}"]
    return ProcessingStep(
        name=name,
        step_args=processor.run(
            code=str(STEPS_RELATIVE / script),
            inputs=[s3_input("model", model_data), s3_input("data", params.input_data if data is None else data)],
            outputs=[
                ProcessingOutput(
                    output_name=output,
                    s3_output=ProcessingS3Output(
                        s3_uri=execution_uri(config, output),
                        local_path=f"{PROCESSING}/{output}",
                        s3_upload_mode="EndOfJob",
                    ),
                )
            ],
            arguments=[*paths, *arguments],
        ),
        description=description,
        property_files=property_files,
        retry_policies=job_retries(),
    )


def serving_model(config: PipelineConfig, session: Any, image: str, model_data: Any) -> ModelBuilder:
    """The trained model as its endpoints serve it: the archive's own `code/inference.py` in the image."""
    return ModelBuilder(
        s3_model_data_url=model_data,
        image_uri=image,
        role_arn=config.role_arn,
        sagemaker_session=session,
        env_vars={"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"},
    )


def clarify_model_step(config: PipelineConfig, session: Any, image: str, model_data: Any) -> ModelStep:
    """The trained model as a SageMaker Model: Clarify's model checks serve it on a shadow endpoint."""
    builder = serving_model(config, session, image, model_data)
    return ModelStep(
        name=CLARIFY_MODEL,
        step_args=builder.build(),
        description="The trained model, for the shadow endpoint of Clarify's model bias and explainability checks",
        retry_policies=[throttling_retries()],
    )


@dataclass(frozen=True)
class ClarifyChecks:
    """The three Clarify check steps and where the run's own analysis configurations are."""

    data_bias: ClarifyCheckStep
    model_bias: ClarifyCheckStep
    explainability: ClarifyCheckStep
    inputs_dir: Any

    def config_file(self, check: str) -> FileSource:
        return FileSource(content_type="application/json", s3_uri=analysis_config_uri(self.inputs_dir, check))


def analysis_config_uri(inputs_dir: Any, check: str) -> Join:
    """Where ClarifyInputs writes a check's analysis configuration for the run."""
    return Join(on="/", values=[inputs_dir, check, "config", "analysis_config.json"])


def clarify_checks(
    config: PipelineConfig, session: Any, params: Parameters, inputs: ProcessingStep, model: ModelStep
) -> ClarifyChecks:
    """Clarify's data bias, model bias and model explainability (Kernel SHAP) checks, built with the SDK.

    The pipeline serves every model line, and each line has its own label, protected attribute and
    features, which an analysis configuration must name: the ClarifyInputs step writes each check's
    configuration and dataset for the run (`steps/clarify_inputs.py`), and each check's
    `analysis_config` input reads that file instead of the one the SDK uploads at generation (whose
    label and facet are placeholders). The checks compute and register a new baseline and never
    fail the run on a violation: the approval gate judges the figures (docs/governance.md).
    """
    inputs_dir = inputs.properties.ProcessingOutputConfig.Outputs["clarify"].S3Output.S3Uri
    job = CheckJobConfig(
        role=config.role_arn,
        instance_count=1,
        instance_type=config.processing_instance_type,
        volume_size_in_gb=30,
        max_runtime_in_seconds=config.max_runtime_s,
        base_job_name=f"{config.name}-clarify",
        sagemaker_session=session,
    )
    placeholder_label, placeholder_facet = "label", "protected_attribute"  # replaced by the run's configuration
    bias = BiasConfig(label_values_or_threshold=["1"], facet_name=placeholder_facet)
    model_config = ModelConfig(
        model_name=model.properties.ModelName,
        instance_type=config.inference_instance_type,
        instance_count=1,
        content_type="text/csv",
        accept_type="text/csv",
    )

    def data(check: str) -> DataConfig:
        return DataConfig(
            s3_data_input_path=Join(on="/", values=[inputs_dir, check, "dataset"]),
            s3_output_path=execution_uri(config, "clarify", check),
            s3_analysis_config_output_path=f"s3://{config.bucket}/{config.prefix}/clarify-config/{check}",
            label=placeholder_label,
            dataset_type="text/csv",
        )

    def step(name: str, check: str, clarify_config: Any, description: str) -> ClarifyCheckStep:
        built = ClarifyCheckStep(
            name=name,
            clarify_check_config=clarify_config,
            check_job_config=job,
            skip_check=True,
            fail_on_violation=False,
            register_new_baseline=True,
            model_package_group_name=params.model_group,
            description=description,
            depends_on=[inputs],
        )
        # The run's configuration (label, facet, headers of this model line), written by ClarifyInputs.
        built._processing_params["config_input"] = ProcessingInput(
            input_name="analysis_config",
            s3_input=ProcessingS3Input(
                s3_uri=analysis_config_uri(inputs_dir, check),
                local_path=CLARIFY_CONFIG_INPUT,
                s3_data_type="S3Prefix",
                s3_input_mode="File",
                s3_compression_type="None",
            ),
        )
        return built

    return ClarifyChecks(
        data_bias=step(
            DATA_BIAS,
            "data-bias",
            DataBiasCheckConfig(data_config=data("data-bias"), data_bias_config=bias, methods="all"),
            "Clarify pre-training bias of the training rows (CI, DPL, KL, JS, LP, TVD, KS, CDDL)",
        ),
        model_bias=step(
            MODEL_BIAS,
            "model-bias",
            ModelBiasCheckConfig(
                data_config=data("model-bias"),
                data_bias_config=bias,
                model_config=model_config,
                model_predicted_label_config=ModelPredictedLabelConfig(probability_threshold=0.5),
                methods="all",
            ),
            "Clarify post-training bias of the model on the held-out rows (DI, DPPL, ...)",
        ),
        explainability=step(
            EXPLAINABILITY,
            "explainability",
            ModelExplainabilityCheckConfig(
                data_config=data("explainability"),
                model_config=model_config,
                explainability_config=SHAPConfig(
                    num_samples=100, num_clusters=10, agg_method="mean_abs", save_local_shap_values=False, seed=7
                ),
            ),
            "Clarify Kernel SHAP attributions of the model on a sample of the held-out rows",
        ),
        inputs_dir=inputs_dir,
    )


def register_step(
    config: PipelineConfig,
    session: Any,
    params: Parameters,
    image: str,
    version: str,
    steps: tuple[TrainingStep, ProcessingStep, ProcessingStep, PropertyFile],
    clarify: ClarifyChecks,
) -> ModelStep:
    """A version in the model group, PendingManualApproval, with its evidence and lineage."""
    train, evaluate, baseline, lineage_file = steps
    evaluation_dir = evaluate.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri
    baseline_dir = baseline.properties.ProcessingOutputConfig.Outputs["baseline"].S3Output.S3Uri

    def report(directory: Any, name: str) -> MetricsSource:
        return MetricsSource(content_type="application/json", s3_uri=Join(on="/", values=[directory, name]))

    def calculated(check: ClarifyCheckStep) -> MetricsSource:
        return MetricsSource(content_type="application/json", s3_uri=check.properties.CalculatedBaselineConstraints)

    def used(check: ClarifyCheckStep) -> MetricsSource:
        return MetricsSource(
            content_type="application/json", s3_uri=check.properties.BaselineUsedForDriftCheckConstraints
        )

    def lineage_value(name: str) -> JsonGet:
        return JsonGet(step_name=evaluate.name, property_file=lineage_file, json_path=name)

    builder = serving_model(config, session, image, train.properties.ModelArtifacts.S3ModelArtifacts)
    return ModelStep(
        name=REGISTER,
        step_args=builder.register(
            model_package_group_name=params.model_group,
            content_types=["text/csv"],
            response_types=["text/csv"],
            inference_instances=[config.inference_instance_type],
            transform_instances=[config.inference_instance_type],
            approval_status="PendingManualApproval",
            # Clarify's own reports (analysis.json) as the version's bias and explainability metrics
            # and baselines, so Studio shows them with the version; evaluate.py's bias.json is still
            # written next to evaluation.json.
            model_metrics=ModelMetrics(
                model_statistics=report(evaluation_dir, "evaluation.json"),
                bias_pre_training=calculated(clarify.data_bias),
                bias_post_training=calculated(clarify.model_bias),
                explainability=calculated(clarify.explainability),
            ),
            drift_check_baselines=DriftCheckBaselines(
                model_data_statistics=report(baseline_dir, "baseline.json"),
                bias_config_file=clarify.config_file("model-bias"),
                bias_pre_training_constraints=used(clarify.data_bias),
                bias_post_training_constraints=used(clarify.model_bias),
                explainability_constraints=used(clarify.explainability),
                explainability_config_file=clarify.config_file("explainability"),
            ),
            metadata_properties=MetadataProperties(
                commit_id=version, repository="closedloop", generated_by=ExecutionVariables.PIPELINE_EXECUTION_ARN
            ),
            customer_metadata_properties={
                lineage.PREPARED_MANIFEST: lineage_value("prepared_manifest"),
                lineage.PREPARED_DATA: lineage_value("prepared_data"),
                lineage.CODE_VERSION: lineage_value("code_version"),
                lineage.PIPELINE_EXECUTION: ExecutionVariables.PIPELINE_EXECUTION_ARN,
                lineage.TRIGGER: lineage_value("trigger"),
                lineage.TRIGGER_REASON: lineage_value("trigger_reason"),
                lineage.PREP_RUN_ID: lineage_value("prep_run_id"),
                lineage.DATASET: lineage_value("dataset"),
                lineage.FEATURE_DATASET: lineage_value("feature_dataset"),
            },
        ),
        description="A new version in the model group, pending the approval gate",
        retry_policies=[throttling_retries()],
        depends_on=[evaluate, baseline, clarify.data_bias, clarify.model_bias, clarify.explainability],
    )


def dataset_step(config: PipelineConfig, session: Any, params: Parameters, image: str) -> ProcessingStep:
    """The training set, from the line's feature group point-in-time (the prepared rows, for a line with none):
    `pipelines/steps/dataset.py`, reading the run's prepared manifest and the offline store itself."""
    processor = script_processor(config, session, params, image, DATASET)
    return ProcessingStep(
        name=DATASET,
        step_args=processor.run(
            code=str(STEPS_RELATIVE / "dataset.py"),
            # the manifest as an input, not an argument: a Processing job's arguments hold 256 characters
            inputs=[
                ProcessingInput(
                    input_name="manifest",
                    s3_input=ProcessingS3Input(
                        s3_uri=params.prepared_manifest,
                        local_path=f"{PROCESSING}/manifest",
                        s3_data_type="S3Prefix",
                        s3_input_mode="File",
                        s3_data_distribution_type="FullyReplicated",
                    ),
                )
            ],
            outputs=[
                ProcessingOutput(
                    output_name="dataset",
                    s3_output=ProcessingS3Output(
                        s3_uri=execution_uri(config, "dataset"),
                        local_path=f"{PROCESSING}/dataset",
                        s3_upload_mode="EndOfJob",
                    ),
                )
            ],
            arguments=["--manifest", f"{PROCESSING}/manifest/manifest.json", "--output", f"{PROCESSING}/dataset"],
        ),
        description="The training set from the line's feature group, point-in-time correct (or its prepared rows)",
        retry_policies=job_retries(),
    )


def build_pipeline(config: PipelineConfig, session: Any) -> Pipeline:
    """The pipeline object (steps, parameters, lineage), built in `session` (a PipelineSession)."""
    quiet_sdk()
    version = code_version()
    image = image_uris.retrieve(
        "sklearn", region=config.region, version=SKLEARN_VERSION, py_version="py3", image_scope="training"
    )
    params = Parameters.declare(config)
    dataset = dataset_step(config, session, params, image)
    data = dataset.properties.ProcessingOutputConfig.Outputs["dataset"].S3Output.S3Uri
    train = train_step(config, session, params, image, version, data)
    model_data = train.properties.ModelArtifacts.S3ModelArtifacts
    lineage_file = PropertyFile(name="Lineage", output_name="evaluation", path="lineage.json")
    evaluate = processing_step(
        config,
        session,
        params,
        image,
        name=EVALUATE,
        data=data,
        script="evaluate.py",
        output="evaluation",
        model_data=model_data,
        arguments=[
            "--seed",
            "7",
            "--importance-repeats",
            "5",
            "--lineage",
            Join(on="", values=["feature_dataset=", data, "/dataset.json"]),
        ],
        description="Quality, bias (Clarify format) and feature importance on the held-out rows",
        property_files=[
            PropertyFile(name="Evaluation", output_name="evaluation", path="evaluation.json"),
            lineage_file,
        ],
    )
    baseline = processing_step(
        config,
        session,
        params,
        image,
        name=BASELINE,
        data=data,
        script="baseline.py",
        output="baseline",
        model_data=model_data,
        arguments=["--seed", "7", "--sample-size", "1000"],
        description="Per-feature and prediction statistics the drift monitor compares against",
    )
    clarify_inputs = processing_step(
        config,
        session,
        params,
        image,
        name=CLARIFY_INPUTS,
        data=data,
        script="clarify_inputs.py",
        output="clarify",
        model_data=model_data,
        arguments=["--seed", "7", "--explain-rows", "300", "--instance-type", config.inference_instance_type],
        description="Each Clarify check's dataset and analysis configuration for this model line",
    )
    clarify_model = clarify_model_step(config, session, image, model_data)
    clarify = clarify_checks(config, session, params, clarify_inputs, clarify_model)
    register = register_step(
        config, session, params, image, version, (train, evaluate, baseline, lineage_file), clarify
    )
    return Pipeline(
        name=config.name,
        parameters=params.all(),
        steps=[
            dataset,
            train,
            evaluate,
            baseline,
            clarify_inputs,
            clarify_model,
            clarify.data_bias,
            clarify.model_bias,
            clarify.explainability,
            register,
        ],
        sagemaker_session=session,
        pipeline_experiment_config=None,
    )


def generate(config: PipelineConfig) -> dict[str, Any]:
    """The pipeline definition (as the CreatePipeline API takes it), uploading step code to the bucket."""
    session = PipelineSession(
        boto_session=boto3.Session(region_name=config.region),
        default_bucket=config.bucket,
        default_bucket_prefix=config.prefix,
    )
    definition: dict[str, Any] = json.loads(build_pipeline(config, session).definition())
    return definition


@contextlib.contextmanager
def offline_aws(config: PipelineConfig) -> Iterator[None]:
    """An in-process AWS (moto) holding the bucket the SDK uploads step code to; no credentials needed."""
    from moto import mock_aws  # noqa: PLC0415 - only the offline generation needs moto

    saved = dict(os.environ)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "offline",
            "AWS_SECRET_ACCESS_KEY": "offline",
            "AWS_DEFAULT_REGION": config.region,
            "SAGEMAKER_VALIDATE_ROLE": "false",
        }
    )
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        os.environ.pop(name, None)
    try:
        with mock_aws():
            boto3.client("s3", region_name=config.region).create_bucket(
                Bucket=config.bucket, CreateBucketConfiguration={"LocationConstraint": config.region}
            )
            yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def check(path: Path, generated: str) -> int:
    """0 when `path` holds exactly the generated definition; otherwise 1, saying what to do and where it differs."""
    current = path.read_text(encoding="utf-8") if path.is_file() else None
    if current == generated:
        print(f"{path} is what the code generates (code {code_version()[:12]})", file=sys.stderr)
        return 0
    why = "it is missing" if current is None else "it is not what the code generates"
    diff = difflib.unified_diff(
        (current or "").splitlines(), generated.splitlines(), str(path), "generated now", n=1, lineterm=""
    )
    print(f"{path} is stale ({why}): run `make pipeline` and commit the result", file=sys.stderr)
    print("\n".join(list(diff)[:16]), file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    defaults = PipelineConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="build/pipeline.json")
    parser.add_argument("--offline", action="store_true", help="generate inside moto (no AWS account needed)")
    parser.add_argument(
        "--check", metavar="PATH", type=Path, help="write nothing; fail when PATH differs from what is generated"
    )
    parser.add_argument("--name", default=defaults.name, help="pipeline name (the stack's <ResourcePrefix>-training)")
    parser.add_argument("--role-arn", default=defaults.role_arn, help="the stack's TrainingPipelineRoleArn output")
    parser.add_argument("--bucket", default=defaults.bucket, help="the stack's ArtifactsBucketName output")
    parser.add_argument("--region", help=f"default: AWS_REGION, or {defaults.region} (always, with --offline)")
    parser.add_argument("--model-group", default=defaults.model_group, help="default of ModelPackageGroupName")
    parser.add_argument("--training-instance-type", default=defaults.training_instance_type)
    parser.add_argument("--processing-instance-type", default=defaults.processing_instance_type)
    parser.add_argument("--inference-instance-type", default=defaults.inference_instance_type)
    args = parser.parse_args(argv)
    config = PipelineConfig(
        name=args.name,
        role_arn=args.role_arn,
        bucket=args.bucket,
        # Offline, the environment's region must not leak in: the checked-in definition is the same everywhere.
        region=args.region or (defaults.region if args.offline else os.environ.get("AWS_REGION") or defaults.region),
        model_group=args.model_group,
        training_instance_type=args.training_instance_type,
        processing_instance_type=args.processing_instance_type,
        inference_instance_type=args.inference_instance_type,
    )
    quiet_sdk()
    output = Path(args.output).resolve()
    checked = args.check.resolve() if args.check is not None else None
    previous = Path.cwd()
    os.chdir(REPO)
    try:
        with offline_aws(config) if args.offline else contextlib.nullcontext():
            definition = generate(config)
    finally:
        os.chdir(previous)
    text = json.dumps(definition, indent=1, sort_keys=True) + "\n"
    if checked is not None:
        return check(checked, text)
    target = output
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target} ({len(definition['Steps'])} steps, code {code_version()[:12]})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
