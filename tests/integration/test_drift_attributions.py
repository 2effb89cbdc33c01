"""Route 7 on moto: feature attribution drift — a captured window's Clarify job, started once, read once.

moto keeps Processing jobs `InProgress` until they are finished (`closedloop_ops.moto_ext.jobs`), as
AWS does while Clarify's container runs; the tests finish them, writing the job's `analysis.json`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from closedloop import ledger_keys, lineage
from closedloop.drift.explain import state_key
from closedloop.drift.monitor import DriftMonitor
from closedloop.events.scheduler import DriftMonitorRun
from closedloop.ledger import Ledger
from closedloop.settings import Settings
from closedloop_ops.moto_ext import jobs as moto_jobs
from support.capture import baseline_document, bias_report
from support.events import load_event
from support.stack import ACCOUNT, REGION, Stack
from support.worlds import put_capture

NAMESPACE = "closedloop/Drift"
CLARIFY_IMAGE = f"131013547314.dkr.ecr.{REGION}.amazonaws.com/sagemaker-clarify-processing:1.0"
JOB_ROLE = f"arn:aws:iam::{ACCOUNT}:role/closedloop/training-pipeline/closedloop-TrainingPipelineRole"
SHAP = {"num_samples": 64, "num_clusters": 5, "agg_method": "mean_abs", "use_logit": False, "seed": 7}


@pytest.fixture(autouse=True)
def _fresh_metrics() -> Iterator[None]:
    from closedloop.observability import metrics

    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


@pytest.fixture(scope="module")
def baseline() -> dict[str, Any]:
    return baseline_document(n=2000, seed=1)


def attributions(features: list[str], *, reverse: bool = False) -> dict[str, float]:
    """Global SHAP values, largest for the first feature (or for the last one)."""
    order = list(reversed(features)) if reverse else features
    return {name: round(0.4 / (rank + 1), 6) for rank, name in enumerate(order)}


def analysis(values: dict[str, float]) -> bytes:
    """Clarify's analysis.json of an explainability run."""
    return json.dumps(
        {"version": "1.0", "explanations": {"kernel_shap": {"label0": {"global_shap_values": values}}}}
    ).encode()


def serve(stack: Stack, baseline: dict[str, Any], *, version: int = 1, explained: bool = True) -> str:
    """The endpoint serves version `version`, with its drift baseline and (if `explained`) its
    explainability baseline: Clarify's analysis.json and the analysis configuration that made it."""
    settings = stack.settings
    s3 = boto3.client("s3", region_name=REGION)
    sm = boto3.client("sagemaker", region_name=REGION)
    bucket, base = settings.artifacts_bucket, f"evidence/v{version}"
    s3.put_object(Bucket=bucket, Key=f"{base}/baseline.json", Body=json.dumps(baseline).encode())
    s3.put_object(Bucket=bucket, Key=f"{base}/bias.json", Body=json.dumps(bias_report(0.02)).encode())
    s3.put_object(Bucket=bucket, Key=f"{base}/analysis.json", Body=analysis(attributions(baseline["feature_order"])))
    config = {"version": "1.0", "headers": ["approved", *baseline["feature_order"]], "methods": {"shap": SHAP}}
    s3.put_object(Bucket=bucket, Key=f"{base}/analysis_config.json", Body=json.dumps(config).encode())
    with contextlib.suppress(sm.exceptions.ClientError):
        sm.create_model_package_group(ModelPackageGroupName=settings.model_package_group)

    def uri(name: str) -> dict[str, str]:
        return {"ContentType": "application/json", "S3Uri": f"s3://{bucket}/{base}/{name}"}

    checks: dict[str, Any] = {"ModelDataQuality": {"Statistics": uri("baseline.json")}}
    if explained:
        checks["Explainability"] = {"Constraints": uri("analysis.json"), "ConfigFile": uri("analysis_config.json")}
    image = f"141502667606.dkr.ecr.{REGION}.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"
    package = sm.create_model_package(
        ModelPackageGroupName=settings.model_package_group,
        InferenceSpecification={
            "Containers": [{"Image": image, "ModelDataUrl": f"s3://{bucket}/model/v{version}/model.tar.gz"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        ModelApprovalStatus="Approved",
        ModelMetrics={"Bias": {"PostTrainingReport": uri("bias.json")}},
        DriftCheckBaselines=checks,
    )["ModelPackageArn"]
    endpoint, name = settings.endpoint_name, f"{settings.endpoint_name}-v{version}"
    sm.create_model(
        ModelName=name,
        PrimaryContainer={"ModelPackageName": package},
        ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/m",
    )
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
        ],
        DataCaptureConfig={
            "EnableCapture": True,
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": f"s3://{settings.capture_bucket}/capture",
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        },
        Tags=[{"Key": lineage.MODEL_PACKAGE, "Value": package}],
    )
    if version == 1:
        sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=name)
    else:
        sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=name)
    from moto.sagemaker.models import sagemaker_backends

    served = sagemaker_backends[ACCOUNT][REGION].endpoints[endpoint]
    served.endpoint_config_name = name
    served.creation_time = served.last_modified_time = datetime.now(UTC) - timedelta(hours=3)
    return package


def settings_of(stack: Stack, **update: Any) -> Settings:
    return stack.settings.model_copy(
        update={"line": "loans", "clarify_image_uri": CLARIFY_IMAGE, "attribution_job_role_arn": JOB_ROLE, **update}
    )


def monitor(stack: Stack, settings: Settings | None = None) -> DriftMonitor:
    settings = settings or settings_of(stack)
    return DriftMonitor(
        settings=settings,
        s3=boto3.client("s3", region_name=REGION),
        sagemaker=boto3.client("sagemaker", region_name=REGION),
        cloudwatch=boto3.client("cloudwatch", region_name=REGION),
        ledger=Ledger(settings.ledger_table, boto3.client("dynamodb", region_name=REGION)),
    )


def run(stack: Stack, execution_id: str, settings: Settings | None = None) -> dict[str, Any]:
    trigger = DriftMonitorRun.model_validate({**load_event("drift_monitor_schedule"), "execution_id": execution_id})
    return monitor(stack, settings).handle(trigger).model_dump(mode="json")


def attribution_jobs() -> list[dict[str, Any]]:
    sm = boto3.client("sagemaker", region_name=REGION)
    names = [j["ProcessingJobName"] for j in sm.list_processing_jobs()["ProcessingJobSummaries"]]
    return [sm.describe_processing_job(ProcessingJobName=n) for n in sorted(names) if "-attr-" in n]


def read(uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    body: bytes = boto3.client("s3", region_name=REGION).get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def ndcg_values(endpoint: str) -> list[float]:
    now = datetime.now(UTC)
    points = boto3.client("cloudwatch", region_name=REGION).get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName="AttributionNdcg",
        Dimensions=[{"Name": "Endpoint", "Value": endpoint}],
        StartTime=now - timedelta(hours=1),
        EndTime=now + timedelta(hours=1),
        Period=60,
        Statistics=["Minimum"],
    )["Datapoints"]
    return [p["Minimum"] for p in points]


def decisions(stack: Stack, action: str) -> list[Any]:
    ledger = Ledger(stack.settings.ledger_table, boto3.client("dynamodb", region_name=REGION))
    return [d for d in ledger.decisions_for(f"drift:{stack.settings.endpoint_name}") if d.action == action]


def finish(job: dict[str, Any], values: dict[str, float] | None, status: str = "Completed") -> None:
    """Clarify's container ends: it wrote analysis.json to the job's output (or failed)."""
    if values is not None:
        output = job["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
        bucket, _, key = output.removeprefix("s3://").partition("/")
        boto3.client("s3", region_name=REGION).put_object(
            Bucket=bucket, Key=f"{key}/analysis.json", Body=analysis(values)
        )
    moto_jobs.finish_processing_job(
        ACCOUNT, REGION, job["ProcessingJobName"], status, "" if status == "Completed" else "AlgorithmError: x"
    )


def test_a_measured_window_starts_one_clarify_job_on_its_rows(stack: Stack, baseline: dict[str, Any]) -> None:
    # Given the live version has an explainability baseline and 600 rows were captured an hour ago
    package = serve(stack, baseline)
    put_capture(stack, datetime.now(UTC) - timedelta(hours=1), 600)
    # When the scheduled run measures the window
    result = run(stack, "run-1")
    # Then the drift metrics are published and one Clarify job was started for the window
    assert result["result"] == "published"
    job = result["attribution_job"]
    assert (job["status"], job["rows"]) == ("started", 300)
    [described] = attribution_jobs()
    assert described["ProcessingJobName"] == job["job_name"] and described["ProcessingJobStatus"] == "InProgress"
    assert described["ProcessingJobName"].startswith("closedloop-attr-loans-")
    assert described["AppSpecification"] == {"ImageUri": CLARIFY_IMAGE}
    assert described["RoleArn"] == JOB_ROLE
    # And its inputs are Clarify's: the baseline's shap settings, the live model, the window's features
    inputs = {i["InputName"]: i["S3Input"]["S3Uri"] for i in described["ProcessingInputs"]}
    config = json.loads(read(inputs["analysis_config"]))
    assert config["methods"]["shap"] == SHAP
    assert config["headers"] == baseline["feature_order"] and "label" not in config
    assert config["predictor"]["model_name"] == f"{stack.settings.endpoint_name}-v1"
    rows = list(csv.reader(io.StringIO(read(inputs["dataset"] + "data.csv").decode())))
    assert len(rows) == 300 and {len(r) for r in rows} == {len(baseline["feature_order"])}
    assert inputs["dataset"].startswith(f"s3://{stack.settings.capture_bucket}/attributions/closedloop-loans/")
    # And the start is a decision of route 7, with the version it explains
    [started] = decisions(stack, "start_attribution_job")
    assert (started.result, started.details["job"], started.details["model_package_arn"]) == (
        "started",
        job["job_name"],
        package,
    )
    assert started.details["rows"] == 300 and started.details["shap_settings_from"] == "baseline-config"


def test_no_second_job_while_one_runs_nor_for_the_same_window_again(stack: Stack, baseline: dict[str, Any]) -> None:
    serve(stack, baseline)
    endpoint = stack.settings.endpoint_name
    ledger = Ledger(stack.settings.ledger_table, boto3.client("dynamodb", region_name=REGION))
    put_capture(stack, datetime.now(UTC) - timedelta(hours=2), 600, seed=3)
    first = run(stack, "run-1")["attribution_job"]["job_name"]
    # Given the function died after starting the job, before its watermark and job state were written
    ledger.put_state(ledger_keys.capture_watermark(endpoint), {})
    ledger.put_state(state_key(endpoint), {})
    # When the schedule retries the same window
    again = run(stack, "run-1-retry")["attribution_job"]
    # Then it finds the window's job instead of starting another
    assert (again["status"], again["job_name"], again["reason"]) == ("started", first, "found the window's job")
    assert [j["ProcessingJobName"] for j in attribution_jobs()] == [first]
    # Given new traffic while that job still runs
    put_capture(stack, datetime.now(UTC) - timedelta(hours=1), 600, seed=4)
    result = run(stack, "run-2")
    # Then the drift is measured, but no second job starts: one at a time per line
    assert result["result"] == "published"
    assert result["attribution_read"]["status"] == "running"
    assert result["attribution_job"]["status"] == "skipped" and "still running" in result["attribution_job"]["reason"]
    assert len(attribution_jobs()) == 1


def test_a_finished_job_is_read_its_ndcg_published_and_the_next_window_explained(
    stack: Stack, baseline: dict[str, Any]
) -> None:
    serve(stack, baseline)
    endpoint = stack.settings.endpoint_name
    features = baseline["feature_order"]
    put_capture(stack, datetime.now(UTC) - timedelta(hours=2), 600, seed=3)
    run(stack, "run-1")
    [job] = attribution_jobs()
    # Given Clarify's job ended with the live attribution ranking upside down
    finish(job, attributions(features, reverse=True))
    put_capture(stack, datetime.now(UTC) - timedelta(hours=1), 600, seed=4)
    # When the next run comes
    result = run(stack, "run-2")
    # Then it publishes the nDCG of the window the job explained, below SageMaker's 0.9
    read_back = result["attribution_read"]
    assert read_back["status"] == "published" and read_back["ndcg"] < 0.9
    assert ndcg_values(endpoint) == [pytest.approx(read_back["ndcg"])]
    [measured] = decisions(stack, "measure_attribution_drift")
    assert measured.details["below_threshold"] is True and measured.details["job"] == job["ProcessingJobName"]
    # And it starts the job of its own window, the line's only one running
    assert result["attribution_job"]["status"] == "started"
    second = [j for j in attribution_jobs() if j["ProcessingJobStatus"] == "InProgress"]
    assert [j["ProcessingJobName"] for j in second] == [result["attribution_job"]["job_name"]]
    # Given that one ends with the baseline's ranking: the next run publishes 1
    finish(second[0], attributions(features))
    put_capture(stack, datetime.now(UTC) - timedelta(minutes=30), 600, seed=5)
    assert run(stack, "run-3")["attribution_read"]["ndcg"] == pytest.approx(1.0)


def test_a_failed_job_or_a_version_no_longer_live_publishes_nothing(stack: Stack, baseline: dict[str, Any]) -> None:
    serve(stack, baseline)
    endpoint = stack.settings.endpoint_name
    put_capture(stack, datetime.now(UTC) - timedelta(hours=2), 600, seed=3)
    run(stack, "run-1")
    [job] = attribution_jobs()
    # Given the job failed: the next run records why, publishes nothing and explains its own window
    finish(job, None, status="Failed")
    put_capture(stack, datetime.now(UTC) - timedelta(hours=1, minutes=30), 600, seed=4)
    result = run(stack, "run-2")
    assert result["attribution_read"]["status"] == "failed" and "AlgorithmError" in result["attribution_read"]["reason"]
    assert ndcg_values(endpoint) == []
    running = [j for j in attribution_jobs() if j["ProcessingJobStatus"] == "InProgress"]
    assert len(running) == 1
    # Given version 2 went live before that window's job ended
    serve(stack, baseline, version=2)
    finish(running[0], attributions(baseline["feature_order"], reverse=True))
    put_capture(stack, datetime.now(UTC) - timedelta(hours=1), 600, seed=5)
    result = run(stack, "run-3")
    # Then the window of version 1 is measured and recorded, not published for version 2
    assert result["attribution_read"]["status"] == "not-published" and result["attribution_read"]["ndcg"] < 0.9
    assert ndcg_values(endpoint) == []
    statuses = [d.result for d in decisions(stack, "measure_attribution_drift")]
    assert sorted(statuses) == ["failed", "not-published"]


def test_a_version_without_an_explainability_baseline_is_measured_but_not_explained(
    stack: Stack, baseline: dict[str, Any]
) -> None:
    # Given the live version registered no explainability baseline
    package = serve(stack, baseline, explained=False)
    put_capture(stack, datetime.now(UTC) - timedelta(hours=1), 600)
    # When the run measures the window
    result = run(stack, "run-1")
    # Then the drift is published, no job starts, and the run's decision says why
    assert result["result"] == "published"
    assert result["attribution_job"]["status"] == "skipped"
    assert result["attribution_job"]["reason"] == f"model package {package} has no explainability baseline"
    assert attribution_jobs() == [] and decisions(stack, "start_attribution_job") == []
    [measured] = decisions(stack, "measure_drift")
    assert measured.details["attribution_job"] == "skipped"
    # And a stack without Clarify's image configured explains nothing either
    put_capture(stack, datetime.now(UTC) - timedelta(minutes=30), 600, seed=9)
    unconfigured = settings_of(stack, clarify_image_uri="")
    assert "CLARIFY_IMAGE_URI" in run(stack, "run-2", unconfigured)["attribution_job"]["reason"]
    assert attribution_jobs() == []


class _DeniedJobs:
    """A SageMaker client whose DescribeProcessingJob is denied (a missing grant), everything else real."""

    def __init__(self) -> None:
        self._real = boto3.client("sagemaker", region_name=REGION)

    def describe_processing_job(self, **_: Any) -> Any:
        from botocore.exceptions import ClientError

        error = {"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}}
        raise ClientError(error, "DescribeProcessingJob")  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_a_job_that_cannot_be_read_costs_the_attribution_figure_not_the_drift_metrics(
    stack: Stack, baseline: dict[str, Any]
) -> None:
    serve(stack, baseline)
    put_capture(stack, datetime.now(UTC) - timedelta(hours=2), 600, seed=3)
    run(stack, "run-1")
    put_capture(stack, datetime.now(UTC) - timedelta(hours=1), 600, seed=4)
    # Given the job in flight cannot be described
    settings = settings_of(stack)
    denied = DriftMonitor(
        settings=settings,
        s3=boto3.client("s3", region_name=REGION),
        sagemaker=_DeniedJobs(),  # type: ignore[arg-type]
        cloudwatch=boto3.client("cloudwatch", region_name=REGION),
        ledger=Ledger(settings.ledger_table, boto3.client("dynamodb", region_name=REGION)),
    )
    trigger = DriftMonitorRun.model_validate({**load_event("drift_monitor_schedule"), "execution_id": "run-2"})
    result = denied.handle(trigger).model_dump(mode="json")
    # Then the drift is still published; the job stays the line's one in flight, and no other starts
    assert result["result"] == "published"
    assert (
        result["attribution_read"]["status"] == "failed" and "could not be read" in result["attribution_read"]["reason"]
    )
    assert result["attribution_job"]["status"] == "skipped"
    assert len(attribution_jobs()) == 1
    ledger = Ledger(settings.ledger_table, boto3.client("dynamodb", region_name=REGION))
    assert (ledger.get_state(state_key(stack.settings.endpoint_name)) or {}).get("job_name")
