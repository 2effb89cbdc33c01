"""The exact Processing / Glue payloads route 1 sends (pure builders)."""

from __future__ import annotations

from closedloop.dataprep.arrival import DataPrepRun, RawObject
from closedloop.dataprep.policy import load_policy
from closedloop.dataprep.requests import (
    build_glue_job_run_request,
    build_prep_manifest,
    build_processing_job_request,
    code_key,
    manifest_key,
    prep_job_name,
)

RUN = DataPrepRun(
    dataset="loans",
    objects=(
        RawObject(
            bucket="data", key="raw/loans/a.csv", dataset="loans", format="csv", size=10, etag="e1", version_id="v1"
        ),
        RawObject(bucket="data", key="raw/loans/b.jsonl", dataset="loans", format="jsonl", size=20, etag="e2"),
    ),
)


def test_job_names_are_deterministic_and_valid_for_sagemaker() -> None:
    name = prep_job_name("closedloop-prep", "loans", RUN.run_id)
    assert name == f"closedloop-prep-loans-{RUN.run_id}"
    long = prep_job_name("a" * 30, "very_long_dataset_name_" * 3, RUN.run_id)
    assert len(long) <= 63 and long.endswith(RUN.run_id) and "_" not in long


def test_processing_request() -> None:
    manifest_uri = f"s3://data/{manifest_key('manifests/', 'loans', RUN.run_id)}"
    request = build_processing_job_request(
        job_name="closedloop-prep-loans-x",
        run=RUN,
        manifest_uri=manifest_uri,
        code_uri="s3://artifacts/code/prepare/abc/prepare.py",
        role_arn="arn:aws:iam::123456789012:role/prep",
        image_uri="img:1",
        instance_type="ml.m5.large",
        max_runtime_s=3600,
    )
    assert request == {
        "ProcessingJobName": "closedloop-prep-loans-x",
        "RoleArn": "arn:aws:iam::123456789012:role/prep",
        "AppSpecification": {
            "ImageUri": "img:1",
            "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/prepare.py"],
            "ContainerArguments": ["--manifest", manifest_uri, "--run-id", RUN.run_id, "--engine", "processing"],
        },
        "ProcessingInputs": [
            {
                "InputName": "code",
                "S3Input": {
                    "S3Uri": "s3://artifacts/code/prepare/abc/",
                    "LocalPath": "/opt/ml/processing/input/code",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                    "S3DataDistributionType": "FullyReplicated",
                },
            }
        ],
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 30}
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "Tags": [
            {"Key": "closedloop:prep-run-id", "Value": RUN.run_id},
            {"Key": "closedloop:dataset", "Value": "loans"},
            {"Key": "closedloop:prep-manifest", "Value": manifest_uri},
        ],
    }
    # SageMaker's limit: each container argument at most 256 characters
    assert all(len(arg) <= 256 for arg in request["AppSpecification"]["ContainerArguments"])


def test_glue_request() -> None:
    assert build_glue_job_run_request(glue_job_name="closedloop-prep", run=RUN, manifest_uri="s3://m") == {
        "JobName": "closedloop-prep",
        "Arguments": {"--manifest": "s3://m", "--run-id": RUN.run_id, "--engine": "glue"},
    }


def test_manifest_names_exact_versions_and_policy() -> None:
    manifest = build_prep_manifest(
        RUN,
        load_policy("loans"),
        data_bucket="data",
        prepared_prefix="prepared/",
        quarantine_bucket="q",
        secret_arn="s",
    )
    assert manifest["run_id"] == RUN.run_id
    assert [o["version_id"] for o in manifest["objects"]] == ["v1", None]
    assert manifest["output_uri"] == f"s3://data/prepared/loans/{RUN.run_id}/"
    assert manifest["quarantine_uri"] == f"s3://q/loans/{RUN.run_id}/"
    assert manifest["policy_sha256"] == load_policy("loans").sha256()
    assert (
        build_prep_manifest(
            RUN,
            load_policy("loans"),
            data_bucket="data",
            prepared_prefix="prepared/",
            quarantine_bucket="q",
            secret_arn="s",
        )
        == manifest
    )  # deterministic: rewriting it on a retry changes nothing


def test_code_is_content_addressed() -> None:
    assert code_key("0123456789abcdef" + "f" * 48) == "code/prepare/0123456789abcdef/prepare.py"
