"""The local job runner runs a Processing job of Clarify's container as route 7 starts it: the window's
dataset explained with Kernel SHAP through the live model's own archive, `analysis.json` out."""

from __future__ import annotations

import io
import json
import random
import tarfile
import tempfile
from pathlib import Path

import boto3

from closedloop.drift.attributions import global_shap_values, ndcg, ranked
from closedloop.drift.explain import build_analysis_config, build_attribution_job_request
from closedloop_ops.local.emitter import Emitter
from closedloop_ops.local.jobs import JobRunner
from closedloop_ops.local.provision import LocalStack
from support.stack import ACCOUNT, REGION, Stack

FEATURES = ["income", "age", "noise"]
INFERENCE = """
class Loaded:
    feature_order = ["income", "age", "noise"]

def model_fn(model_dir):
    return Loaded()

def score(loaded, rows):
    # additive: income counts three times as much as age, noise not at all
    return [0.6 * float(income) + 0.2 * float(age) + 0.0 * float(noise) for income, age, noise in rows]
"""


def model_archive() -> bytes:
    """A model.tar.gz with its serving code, as the training step writes one (code/inference.py, common.py)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in (("code/inference.py", INFERENCE), ("code/common.py", f"FEATURES = {FEATURES!r}\n")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_clarify_job_of_route_7_is_run_with_the_live_models_archive(stack: Stack) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    sm = boto3.client("sagemaker", region_name=REGION)
    bucket = stack.settings.artifacts_bucket
    # Given the live model, created from a registered version as route 4 creates it
    s3.put_object(Bucket=bucket, Key="model/v1/model.tar.gz", Body=model_archive())
    sm.create_model_package_group(ModelPackageGroupName="closedloop-loans")
    package = sm.create_model_package(
        ModelPackageGroupName="closedloop-loans",
        InferenceSpecification={
            "Containers": [{"Image": "img", "ModelDataUrl": f"s3://{bucket}/model/v1/model.tar.gz"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        ModelApprovalStatus="Approved",
    )["ModelPackageArn"]
    sm.create_model(
        ModelName="closedloop-loans-v1",
        PrimaryContainer={"ModelPackageName": package},
        ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/m",
    )
    # And a window's dataset, configuration and job, as the drift monitor writes and starts them
    rng = random.Random(5)
    rows = "".join(f"{rng.uniform(0, 1):.4f},{rng.uniform(0, 1):.4f},{rng.uniform(0, 1):.4f}\n" for _ in range(80))
    root = f"s3://{stack.settings.capture_bucket}/attributions/closedloop-loans/closedloop-attr-loans-0123456789ab"
    shap = {"num_samples": 32, "num_clusters": 4, "agg_method": "mean_abs", "seed": 3}
    config = build_analysis_config(
        headers=FEATURES, shap=shap, model_name="closedloop-loans-v1", instance_type="ml.m5.large"
    )
    capture = stack.settings.capture_bucket
    prefix = root.removeprefix(f"s3://{capture}/")
    s3.put_object(Bucket=capture, Key=f"{prefix}/config/analysis_config.json", Body=json.dumps(config).encode())
    s3.put_object(Bucket=capture, Key=f"{prefix}/dataset/data.csv", Body=rows.encode())
    image = f"131013547314.dkr.ecr.{REGION}.amazonaws.com/sagemaker-clarify-processing:1.0"
    request = build_attribution_job_request(
        job_name="closedloop-attr-loans-0123456789ab",
        role_arn=f"arn:aws:iam::{ACCOUNT}:role/closedloop-TrainingPipelineRole",
        image_uri=image,
        instance_type="ml.m5.large",
        max_runtime_s=3600,
        root_uri=root,
        model_package_arn=package,
        line="loans",
    )
    sm.create_processing_job(**request)
    # When the local job runner finds the job running
    local = LocalStack(endpoint_url=None, region=REGION, stack_name="closedloop-test")  # type: ignore[arg-type]
    emitter = Emitter(REGION)
    runner = JobRunner(
        stack=local, emitter=emitter, prep_script=Path("prepare.py"), workdir=Path(tempfile.mkdtemp(prefix="t-jobs-"))
    )
    assert runner.run_pending() == 1
    # Then the job completed and announced it, as SageMaker would
    described = sm.describe_processing_job(ProcessingJobName=request["ProcessingJobName"])
    assert described["ProcessingJobStatus"] == "Completed"
    assert [e["detail"]["ProcessingJobStatus"] for e in emitter.published] == ["Completed"]
    # And its analysis.json is Clarify's, with the attributions the model has: income, then age, then noise
    document = json.loads(s3.get_object(Bucket=capture, Key=f"{prefix}/output/analysis.json")["Body"].read().decode())
    values = global_shap_values(document)
    assert ranked(values) == FEATURES and values["noise"] < 1e-6
    assert values["income"] > 2 * values["age"] > 0
    assert ndcg({"income": 0.3, "age": 0.1, "noise": 0.01}, values) == 1.0
    assert runner.run_pending() == 0  # finished jobs are not run again
