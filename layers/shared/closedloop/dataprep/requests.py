"""Pure builders of the exact API payloads route 1 sends (asserted in unit tests without I/O)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from closedloop import lineage
from closedloop.dataprep.arrival import DataPrepRun
from closedloop.dataprep.policy import DatasetPolicy

MANIFEST_SCHEMA = "closedloop.prep-input/1"
CODE_MOUNT = "/opt/ml/processing/input/code"
SCRIPT_NAME = "prepare.py"


def prep_job_name(prefix: str, dataset: str, run_id: str) -> str:
    """`<prefix>-<dataset>-<run id>`: at most 63 characters of [a-zA-Z0-9-], as SageMaker requires."""
    slug = re.sub(r"[^a-zA-Z0-9]+", "-", dataset).strip("-")[: 63 - len(prefix) - len(run_id) - 2]
    return "-".join(part for part in (prefix, slug.strip("-"), run_id) if part)


def manifest_key(manifests_prefix: str, dataset: str, run_id: str) -> str:
    return f"{manifests_prefix}{dataset}/{run_id}/input.json"


def prepared_prefix_uri(bucket: str, prepared_prefix: str, dataset: str, run_id: str) -> str:
    return f"s3://{bucket}/{prepared_prefix}{dataset}/{run_id}/"


def code_key(bundle_sha256: str, name: str = SCRIPT_NAME) -> str:
    """Content-addressed location of a file of the preparation code: the code version is in the key.

    The code is a bundle: the script, its detector module and the wheels of the detector libraries
    (`wheels/…`), all under one prefix, so a Processing job downloads exactly one version of each.
    """
    return f"code/prepare/{bundle_sha256[:16]}/{name}"


def bundle_sha256(files: Mapping[str, bytes]) -> str:
    """The content hash of a code bundle (relative path → content), independent of order."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}\0{hashlib.sha256(files[name]).hexdigest()}\n".encode())
    return digest.hexdigest()


def build_prep_manifest(
    run: DataPrepRun,
    policy: DatasetPolicy,
    *,
    data_bucket: str,
    prepared_prefix: str,
    quarantine_bucket: str,
    secret_arn: str,
    feature_store: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The input manifest of one run: what to read (exact versions), how, and where to write.

    Deterministic for a run (no timestamps), so writing it again on a retry changes nothing.
    `feature_store` (`closedloop.featurestore.ingestion_plan`): the line's feature group the job
    ingests the prepared rows into; absent when the line ingests none.
    """
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "run_id": run.run_id,
        "dataset": run.dataset,
        "policy": policy.model_dump(mode="json"),
        "policy_sha256": policy.sha256(),
        "objects": [
            {
                "bucket": obj.bucket,
                "key": obj.key,
                "version_id": obj.version_id,
                "etag": obj.etag,
                "sequencer": obj.sequencer,
                "size": obj.size,
                "format": obj.format,
            }
            for obj in run.objects
        ],
        "output_uri": prepared_prefix_uri(data_bucket, prepared_prefix, run.dataset, run.run_id),
        "quarantine_uri": f"s3://{quarantine_bucket}/{run.dataset}/{run.run_id}/",
        "pseudonymisation_secret_arn": secret_arn,
    }
    if feature_store is not None:
        manifest["feature_store"] = feature_store
    return manifest


def _tags(run: DataPrepRun, manifest_uri: str) -> dict[str, str]:
    return {
        lineage.PREP_RUN_ID: run.run_id,
        lineage.DATASET: run.dataset,
        lineage.PREP_MANIFEST: lineage.tag_value(manifest_uri),
    }


def build_processing_job_request(
    *,
    job_name: str,
    run: DataPrepRun,
    manifest_uri: str,
    code_uri: str,
    role_arn: str,
    image_uri: str,
    instance_type: str,
    max_runtime_s: int,
) -> dict[str, Any]:
    """CreateProcessingJob for one run: the script from `code_uri`, the run's manifest as argument."""
    code_prefix = code_uri.rsplit("/", 1)[0] + "/"
    return {
        "ProcessingJobName": job_name,
        "RoleArn": role_arn,
        "AppSpecification": {
            "ImageUri": image_uri,
            "ContainerEntrypoint": ["python3", f"{CODE_MOUNT}/{SCRIPT_NAME}"],
            "ContainerArguments": ["--manifest", manifest_uri, "--run-id", run.run_id, "--engine", "processing"],
        },
        "ProcessingInputs": [
            {
                "InputName": "code",
                "S3Input": {
                    "S3Uri": code_prefix,
                    "LocalPath": CODE_MOUNT,
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                    "S3DataDistributionType": "FullyReplicated",
                },
            }
        ],
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": instance_type, "VolumeSizeInGB": 30}
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime_s},
        "Tags": [{"Key": k, "Value": v} for k, v in _tags(run, manifest_uri).items()],
    }


def build_glue_job_run_request(
    *,
    glue_job_name: str,
    run: DataPrepRun,
    manifest_uri: str,
    extra_py_files: Sequence[str] = (),
    engine: str = "glue",
) -> dict[str, Any]:
    """StartJobRun for one run of one of the template's Glue jobs (Python shell, or Spark: `engine`).

    `extra_py_files` (the detector module and the wheels of its libraries, and for Spark the
    preparation script the Spark job runs per file, in S3) go to Glue's `--extra-py-files`: Glue
    puts them on the script's Python path (on every Spark worker too) before it starts, from S3, so
    the job needs no package index.
    """
    arguments = {"--manifest": manifest_uri, "--run-id": run.run_id, "--engine": engine}
    if extra_py_files:
        arguments["--extra-py-files"] = ",".join(extra_py_files)
    return {"JobName": glue_job_name, "Arguments": arguments}
