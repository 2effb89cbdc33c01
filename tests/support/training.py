"""Fixtures-in-code for routes 2 and 3 on moto: prepared runs, the pipeline, registered versions and their evidence.

Everything is written the way the real producers write it: the input manifest by route 1's
builder, the prepared manifest and PII report in `prepare.py`'s format, the reports in the
pipeline's formats, the model package with the pipeline's lineage metadata.
"""

from __future__ import annotations

import contextlib
import copy
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3

from closedloop import lineage
from closedloop.dataprep.requests import manifest_key, prep_job_name
from support.events import load_event
from support.stack import ACCOUNT, REGION, Stack

PIPELINE = "closedloop-training"
GROUP = "closedloop-loans"
IMAGE = f"141502667606.dkr.ecr.{REGION}.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"
PARAMETERS = [
    lineage.PARAM_INPUT_DATA,
    lineage.PARAM_PREPARED_MANIFEST,
    lineage.PARAM_PREP_RUN_ID,
    lineage.PARAM_CODE_VERSION,
    lineage.PARAM_TRIGGER,
    lineage.PARAM_TRIGGER_REASON,
    lineage.PARAM_MODEL_GROUP,
]


def put_json(bucket: str, key: str, document: dict[str, Any]) -> str:
    boto3.client("s3", region_name=REGION).put_object(Bucket=bucket, Key=key, Body=json.dumps(document).encode())
    return f"s3://{bucket}/{key}"


def minimal_definition() -> str:
    """A pipeline definition with the parameters the routes set (moto runs no steps)."""
    return json.dumps(
        {
            "Version": "2020-12-01",
            "Parameters": [{"Name": name, "Type": "String"} for name in PARAMETERS],
            "Steps": [{"Name": "Register", "Type": "RegisterModel", "Arguments": {}}],
        }
    )


def create_pipeline(name: str = PIPELINE) -> str:
    return boto3.client("sagemaker", region_name=REGION).create_pipeline(
        PipelineName=name,
        PipelineDefinition=minimal_definition(),
        RoleArn=f"arn:aws:iam::{ACCOUNT}:role/closedloop-test-TrainingPipelineRole",
    )["PipelineArn"]


@dataclass(frozen=True)
class PreparedRun:
    run_id: str
    dataset: str
    input_manifest_uri: str
    prepared_manifest_uri: str
    data_uri: str | None
    rows: int


def prepared_run(
    stack: Stack,
    run_id: str = "f87f512de2d6f705",
    *,
    rows: int = 4000,
    dataset: str = "loans",
    created_at: str = "2026-11-27T09:21:15+00:00",
    pii_clean: bool = True,
    write_prepared: bool = True,
) -> PreparedRun:
    """The manifests (and PII report) a finished preparation run leaves behind."""
    bucket = stack.data_bucket
    output_prefix = f"prepared/{dataset}/{run_id}/"
    input_key = manifest_key("manifests/", dataset, run_id)
    put_json(
        bucket,
        input_key,
        {
            "schema": "closedloop.prep-input/1",
            "run_id": run_id,
            "dataset": dataset,
            "objects": [],
            "output_uri": f"s3://{bucket}/{output_prefix}",
            "quarantine_uri": f"s3://{stack.settings.quarantine_bucket}/{dataset}/{run_id}/",
        },
    )
    data_uri = f"s3://{bucket}/{output_prefix}data.csv" if rows else None
    pii_report_uri = put_json(
        bucket,
        f"{output_prefix}pii_report.json",
        {
            "run_id": run_id,
            "dataset": dataset,
            "files": [],
            "undeclared_pii_files": 0 if pii_clean else 1,
            "clean": pii_clean,
        },
    )
    prepared_uri = f"s3://{bucket}/{output_prefix}manifest.json"
    if write_prepared:
        put_json(
            bucket,
            f"{output_prefix}manifest.json",
            {
                "schema": "closedloop.prepared-manifest/1",
                "run_id": run_id,
                "dataset": dataset,
                "engine": "processing",
                "code": {"script": "prepare.py", "sha256": "9" * 64},
                "input_manifest": f"s3://{bucket}/{input_key}",
                "prepared_files": 1 if rows else 0,
                "quarantined_files": 0 if rows else 2,
                "output": {"data_uri": data_uri, "rows": rows, "columns": [], "label": "approved"},
                "pii_report_uri": pii_report_uri,
                "created_at": created_at,
            },
        )
    return PreparedRun(run_id, dataset, f"s3://{bucket}/{input_key}", prepared_uri, data_uri, rows)


def processing_event(
    run: PreparedRun, status: str = "Completed", *, event_id: str = "", **detail: Any
) -> dict[str, Any]:
    """The sample Processing event, for this run's job."""
    event = copy.deepcopy(load_event("processing_job_state_change"))
    name = prep_job_name("closedloop-prep", run.dataset, run.run_id)
    event["id"] = event_id or f"proc-{run.run_id}-{status}"
    event["account"], event["region"] = ACCOUNT, REGION
    event["resources"] = [f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:processing-job/{name}"]
    spec = event["detail"]
    spec["ProcessingJobName"] = name
    spec["ProcessingJobArn"] = event["resources"][0]
    spec["ProcessingJobStatus"] = status
    spec["AppSpecification"]["ContainerArguments"] = [
        "--manifest",
        run.input_manifest_uri,
        "--run-id",
        run.run_id,
        "--engine",
        "processing",
    ]
    if status == "Failed":
        spec["FailureReason"] = "AlgorithmError: unsupported manifest schema: 'closedloop.prep-input/0'"
    spec.update(detail)
    return event


def glue_event(job_run_id: str, state: str = "SUCCEEDED", *, event_id: str = "", message: str = "") -> dict[str, Any]:
    event = copy.deepcopy(load_event("glue_job_state_change"))
    event["id"] = event_id or f"glue-{job_run_id}-{state}"
    event["account"], event["region"] = ACCOUNT, REGION
    event["detail"].update(jobRunId=job_run_id, state=state, message=message or f"Job run {state.lower()}")
    return event


def start_glue_run(run: PreparedRun, job: str = "closedloop-prep") -> str:
    """A run of the stack's Glue job for this preparation run (the job is created if the stack has none)."""
    glue = boto3.client("glue", region_name=REGION)
    if job not in glue.list_jobs()["JobNames"]:
        glue.create_job(
            Name=job,
            Role=f"arn:aws:iam::{ACCOUNT}:role/closedloop-test-DataPrepRole",
            Command={"Name": "pythonshell", "ScriptLocation": "s3://closedloop-test-artifacts/prepare.py"},
        )
    return glue.start_job_run(
        JobName=job, Arguments={"--manifest": run.input_manifest_uri, "--run-id": run.run_id, "--engine": "glue"}
    )["JobRunId"]


def executions(pipeline: str = PIPELINE) -> list[dict[str, Any]]:
    summaries: list[dict[str, Any]] = boto3.client("sagemaker", region_name=REGION).list_pipeline_executions(
        PipelineName=pipeline
    )["PipelineExecutionSummaries"]
    return summaries


def parameters_of(execution_arn: str) -> dict[str, str]:
    sm = boto3.client("sagemaker", region_name=REGION)
    listed = sm.list_pipeline_parameters_for_execution(PipelineExecutionArn=execution_arn)["PipelineParameters"]
    return {p["Name"]: p["Value"] for p in listed}


# -- registered versions and their evidence --------------------------------------------------------


def evaluation_report(
    auc: float = 0.80, f1: float = 0.80, accuracy: float = 0.75, majority: float = 0.66
) -> dict[str, Any]:
    return {
        "schema": "closedloop.evaluation/1",
        "rows_evaluated": 1032,
        "label": "approved",
        "binary_classification_metrics": {
            "auc": {"value": auc},
            "f1": {"value": f1},
            "accuracy": {"value": accuracy},
            "precision": {"value": 0.74},
            "recall": {"value": 0.87},
        },
        "majority_class_accuracy": majority,
        "feature_importance": {"loan_amount": 0.43, "income": 0.2},
    }


def bias_report(di: float | None = 0.94, dppl: float | None = 0.046) -> dict[str, Any]:
    return {
        "version": "1.0",
        "post_training_bias_metrics": {
            "label": "approved",
            "label_value_or_threshold": "1",
            "facets": {
                "group": [
                    {
                        "value_or_threshold": "B",
                        "metrics": [
                            {"name": "DI", "description": "Disparate Impact (DI)", "value": di},
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


def clarify_post_training_report(di: float | None = 0.97, dppl: float | None = 0.02) -> dict[str, Any]:
    """Clarify's post-training `analysis.json` (its documented shape: more metrics than DI and DPPL)."""
    metrics = [
        {"name": "AD", "description": "Accuracy Difference (AD)", "value": 0.01},
        {"name": "DI", "description": "Disparate Impact (DI)", "value": di},
        {"name": "DPPL", "description": "Difference in Positive Proportions in Predicted Labels (DPPL)", "value": dppl},
        {"name": "CDDPL", "description": "Conditional Demographic Disparity in Predicted Labels (CDDPL)",
         "value": None, "error": "Group variable is empty or not provided"},
    ]  # fmt: skip
    return {
        "version": "1.0",
        "post_training_bias_metrics": {
            "label": "approved",
            "label_value_or_threshold": "1",
            "facets": {"group": [{"value_or_threshold": "B", "metrics": metrics}]},
        },
    }


def clarify_pre_training_report(ci: float = 0.4, dpl: float = 0.03) -> dict[str, Any]:
    return {
        "version": "1.0",
        "pre_training_bias_metrics": {
            "label": "approved",
            "label_value_or_threshold": "1",
            "facets": {
                "group": [
                    {
                        "value_or_threshold": "B",
                        "metrics": [
                            {"name": "CI", "description": "Class Imbalance (CI)", "value": ci},
                            {"name": "DPL", "description": "Difference in Positive Proportions in Labels (DPL)",
                             "value": dpl},
                        ],
                    }
                ]
            },
        },
    }  # fmt: skip


def clarify_explainability_report(values: dict[str, float] | None = None) -> dict[str, Any]:
    """Clarify's explainability `analysis.json`: global SHAP values (mean |SHAP|) of the one score, `label0`."""
    shap = values or {"income": 0.021, "loan_amount": 0.084, "late_payments": 0.047, "age": 0.003}
    return {
        "version": "1.0",
        "explanations": {"kernel_shap": {"label0": {"global_shap_values": shap, "expected_value": 0.61}}},
    }


def start_execution(pipeline: str = PIPELINE, token: str = "", group: str = "closedloop-loans") -> str:
    """An execution of the shared pipeline for a line's model group (as routes 2 and 6 start them)."""
    request: dict[str, Any] = {
        "PipelineName": pipeline,
        "PipelineParameters": [
            {"Name": lineage.PARAM_INPUT_DATA, "Value": "s3://d/x.csv"},
            {"Name": lineage.PARAM_MODEL_GROUP, "Value": group},
        ],
    }
    if token:
        request["ClientRequestToken"] = token
    arn: str = boto3.client("sagemaker", region_name=REGION).start_pipeline_execution(**request)["PipelineExecutionArn"]
    return arn


def register_version(
    stack: Stack,
    execution_arn: str,
    *,
    group: str = GROUP,
    evaluation: dict[str, Any] | None = None,
    bias: dict[str, Any] | None = None,
    prepared: PreparedRun | None = None,
    write_evaluation: bool = True,
    write_bias: bool = True,
    metadata: dict[str, str] | None = None,
    clarify: dict[str, dict[str, Any]] | None = None,
) -> str:
    """A version as the pipeline's Register step creates it, with its reports in the artifacts bucket.

    `clarify` ({"data-bias"|"model-bias"|"explainability": analysis.json}) registers Clarify's reports
    as the pipeline does since it runs Clarify: the post-training report is then Clarify's, not bias.json.
    """
    sm = boto3.client("sagemaker", region_name=REGION)
    with contextlib.suppress(sm.exceptions.ClientError):  # created by an earlier version
        sm.create_model_package_group(ModelPackageGroupName=group)
    execution_id = execution_arn.rsplit("/", 1)[1]
    prefix = f"pipelines/{PIPELINE}/executions/{execution_id}"
    bucket = stack.settings.artifacts_bucket
    evaluation_uri = f"s3://{bucket}/{prefix}/evaluation/evaluation.json"
    bias_uri = f"s3://{bucket}/{prefix}/evaluation/bias.json"
    if write_evaluation:
        put_json(bucket, f"{prefix}/evaluation/evaluation.json", evaluation or evaluation_report())
    if write_bias:
        put_json(bucket, f"{prefix}/evaluation/bias.json", bias or bias_report())
    put_json(bucket, f"{prefix}/baseline/baseline.json", {"schema": "closedloop.baseline/1"})
    lineage_metadata = {
        lineage.PIPELINE_EXECUTION: execution_arn,
        lineage.TRIGGER: "upload",
        lineage.TRIGGER_REASON: "new prepared data",
        lineage.DATASET: "loans",
        lineage.CODE_VERSION: "train=abc prep=def",
    }
    if prepared is not None:
        lineage_metadata.update(
            {
                lineage.PREPARED_MANIFEST: prepared.prepared_manifest_uri,
                lineage.PREPARED_DATA: prepared.data_uri or "none",
                lineage.PREP_RUN_ID: prepared.run_id,
            }
        )
    lineage_metadata.update(metadata or {})
    bias_metrics: dict[str, Any] = {"PostTrainingReport": {"ContentType": "application/json", "S3Uri": bias_uri}}
    explainability: dict[str, Any] = {}
    for check, document in (clarify or {}).items():
        key = f"{prefix}/clarify/{check}/analysis.json"
        put_json(bucket, key, document)
        source = {"ContentType": "application/json", "S3Uri": f"s3://{bucket}/{key}"}
        if check == "data-bias":
            bias_metrics["PreTrainingReport"] = source
        elif check == "model-bias":
            bias_metrics["PostTrainingReport"] = source
        else:
            explainability = {"Explainability": {"Report": source}}
    arn: str = sm.create_model_package(
        ModelPackageGroupName=group,
        InferenceSpecification={
            "Containers": [{"Image": IMAGE, "ModelDataUrl": f"s3://{bucket}/{prefix}/train/model.tar.gz"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        ModelApprovalStatus="PendingManualApproval",
        ModelMetrics={
            "ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": evaluation_uri}},
            "Bias": bias_metrics,
            **explainability,
        },
        DriftCheckBaselines={
            "ModelDataQuality": {
                "Statistics": {
                    "ContentType": "application/json",
                    "S3Uri": f"s3://{bucket}/{prefix}/baseline/baseline.json",
                }
            }
        },
        CustomerMetadataProperties=lineage_metadata,
    )["ModelPackageArn"]
    return arn


def pipeline_event(
    execution_arn: str, status: str = "Succeeded", *, event_id: str = "", **detail: Any
) -> dict[str, Any]:
    """The sample pipeline execution event, for this execution."""
    event = copy.deepcopy(load_event("pipeline_execution_status_change"))
    event["id"] = event_id or f"exec-{execution_arn.rsplit('/', 1)[1]}-{status}"
    event["account"], event["region"] = ACCOUNT, REGION
    pipeline_arn = execution_arn.split("/execution/", maxsplit=1)[0]
    event["resources"] = [pipeline_arn, execution_arn]
    event["detail"].update(
        pipelineArn=pipeline_arn,
        pipelineExecutionArn=execution_arn,
        currentPipelineExecutionStatus=status,
        executionEndTime=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        **detail,
    )
    return event
