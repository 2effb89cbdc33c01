"""The training pipeline's start request, shared by every route that starts a retraining."""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from closedloop import lineage

Trigger = Literal["upload", "alarm"]


def client_request_token(*parts: str) -> str:
    """A deterministic `ClientRequestToken` (SageMaker dedupes starts carrying the same token)."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def build_start_pipeline_request(
    *,
    pipeline_name: str,
    input_data_uri: str,
    prepared_manifest_uri: str,
    prep_run_id: str,
    code_version: str,
    trigger: Trigger,
    trigger_reason: str,
    model_group: str,
    client_request_token: str,
) -> dict[str, Any]:
    """StartPipelineExecution with the data to train on and the lineage the pipeline records.

    The trigger reason is put on one line: the execution description, and the training job's
    hyperparameters that carry it into the model's lineage, accept no line breaks.
    """
    trigger_reason = " ".join(trigger_reason.split())
    parameters = {
        lineage.PARAM_INPUT_DATA: input_data_uri,
        lineage.PARAM_PREPARED_MANIFEST: prepared_manifest_uri,
        lineage.PARAM_PREP_RUN_ID: prep_run_id,
        lineage.PARAM_CODE_VERSION: code_version,
        lineage.PARAM_TRIGGER: trigger,
        lineage.PARAM_TRIGGER_REASON: trigger_reason[:1000],
        lineage.PARAM_MODEL_GROUP: model_group,
    }
    return {
        "PipelineName": pipeline_name,
        "PipelineExecutionDisplayName": f"{trigger}-{client_request_token[:12]}",
        "PipelineExecutionDescription": f"{trigger}: {trigger_reason}"[:3072],
        "PipelineParameters": [{"Name": name, "Value": value} for name, value in parameters.items()],
        "ClientRequestToken": client_request_token,
    }
