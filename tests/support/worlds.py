"""Each route's world on moto in one call, and its event as AWS sends it — for the reliability and fuzz suites.

The route suites (`test_start_training.py`, `test_start_retraining.py`…) set up the same worlds in
their own fixtures; these functions build them from the same support code, so a scenario can be
run against every route without repeating the route's setup.
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import boto3

from closedloop import ledger_keys
from closedloop.ledger import Ledger
from closedloop_ops.moto_ext.pipelines import record_execution_step
from closedloop_ops.synthetic import NO_DRIFT, Drift, rows
from support.capture import baseline_document, bias_report, capture_file, capture_key, deploy_live_model
from support.events import load_event
from support.stack import ACCOUNT, REGION, Stack
from support.training import register_version, start_execution

PREPARED = {
    "prepared_manifest_uri": "s3://closedloop-test-data/prepared/loans/run-7/manifest.json",
    "data_uri": "s3://closedloop-test-data/prepared/loans/run-7/data.csv",
    "prep_run_id": "run-7",
    "dataset": "loans",
    "code_version": "sha256:0f3c",
}
DRIFT_ALARMS = (
    ("closedloop-loans-drift-features", "MaxFeaturePSI"),
    ("closedloop-loans-drift-predictions", "PredictionKS"),
    ("closedloop-loans-drift-bias", "BiasDrift"),
)


def client(stack: Stack, service: str) -> Any:
    """The test's own client of a service, one per stack (building a SageMaker client takes milliseconds)."""
    if service not in stack.clients:
        stack.clients[service] = boto3.client(service, region_name=REGION)
    return stack.clients[service]


def ledger(stack: Stack) -> Ledger:
    return Ledger(stack.settings.ledger_table, client(stack, "dynamodb"))


def processing_jobs(stack: Stack) -> list[str]:
    pages = client(stack, "sagemaker").get_paginator("list_processing_jobs")
    return sorted(j["ProcessingJobName"] for page in pages.paginate() for j in page["ProcessingJobSummaries"])


def pipeline_executions(stack: Stack, pipeline: str = "closedloop-training") -> list[dict[str, Any]]:
    """Every execution of the pipeline, newest first."""
    pages = client(stack, "sagemaker").get_paginator("list_pipeline_executions")
    return [s for page in pages.paginate(PipelineName=pipeline) for s in page["PipelineExecutionSummaries"]]


# -- route 3 -------------------------------------------------------------------------------------------


def executed_version(stack: Stack, **register: Any) -> tuple[str, str]:
    """An execution of the pipeline that registered a version with good evidence: (execution, package) ARNs."""
    from support.training import prepared_run

    execution = start_execution()
    prepared = register.pop("prepared", None) or prepared_run(stack, uuid.uuid4().hex[:16])
    arn = register_version(stack, execution, prepared=prepared, **register)
    record_execution_step(ACCOUNT, REGION, execution, name="Register", metadata={"RegisterModel": {"Arn": arn}})
    return execution, arn


def approval_status(stack: Stack, arn: str) -> str:
    status: str = client(stack, "sagemaker").describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"]
    return status


# -- route 6 -------------------------------------------------------------------------------------------


def retraining_world(stack: Stack) -> Stack:
    """The pipeline, the latest prepared data, and the drift alarms (tagged as the template does)."""
    settings = stack.settings
    boto3.client("sagemaker", region_name=REGION).create_pipeline(
        PipelineName=settings.pipeline_name,
        PipelineDefinition=json.dumps({"Version": "2020-12-01", "Parameters": [], "Steps": []}),
        RoleArn=f"arn:aws:iam::{ACCOUNT}:role/closedloop-pipeline",
    )
    ledger(stack).put_state(ledger_keys.latest_prepared(settings.model_package_group), PREPARED)
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    for name, metric in DRIFT_ALARMS:
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            Namespace="closedloop/Drift",
            MetricName=metric,
            Dimensions=[{"Name": "Endpoint", "Value": settings.endpoint_name}],
            Statistic="Maximum",
            Period=3600,
            EvaluationPeriods=1,
            Threshold=0.2,
            ComparisonOperator="GreaterThanThreshold",
            TreatMissingData="notBreaching",
            Tags=[{"Key": "closedloop:model-group", "Value": settings.model_package_group}],
        )
    return stack


def alarm_event(
    name: str = "closedloop-loans-drift-features", *, at: datetime, state: str = "ALARM", previous: str = "OK"
) -> dict[str, Any]:
    """An alarm state change as EventBridge delivers it (shaped like events/alarm_state_change.json)."""
    event = copy.deepcopy(load_event("alarm_state_change"))
    event["id"] = str(uuid.uuid4())
    event["account"], event["region"] = ACCOUNT, REGION
    event["resources"] = [f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{name}"]
    event["time"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    detail = event["detail"]
    detail["alarmName"] = name
    detail["state"]["value"], detail["previousState"]["value"] = state, previous
    detail["state"]["timestamp"] = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}+0000"
    return event


# -- route 7 -------------------------------------------------------------------------------------------


def drift_world(stack: Stack, *, records: int = 600, baseline: dict[str, Any] | None = None) -> str:
    """The endpoint serves a version with its baseline; `records` rows were captured an hour ago.

    Returns the live model package ARN.
    """
    settings = stack.settings
    document = baseline or _baseline()
    package = deploy_live_model(
        account=ACCOUNT,
        region=REGION,
        endpoint=settings.endpoint_name,
        model_group=settings.model_package_group,
        evidence_bucket=settings.artifacts_bucket,
        capture_bucket=settings.capture_bucket,
        baseline=document,
        bias=bias_report(dppl=document["bias"]["dppl"]),
        deployed_at=datetime.now(UTC) - timedelta(hours=3),
    )
    if records:
        put_capture(stack, datetime.now(UTC) - timedelta(hours=1), records)
    return package


@cache
def _baseline() -> dict[str, Any]:
    return baseline_document(n=2000, seed=1)


def put_capture(
    stack: Stack,
    at: datetime,
    n: int,
    *,
    seed: int = 2,
    drift: Drift = NO_DRIFT,
    variant: str = "AllTraffic",
    body: bytes | None = None,
) -> str:
    """A capture file of `n` synthetic rows (or `body`) written at `at`, where SageMaker writes it."""
    key = capture_key(stack.settings.endpoint_name, at, variant=variant)
    data = body if body is not None else capture_file(rows(n, seed=seed, drift=drift), start=at, rows_per_request=4)
    boto3.client("s3", region_name=REGION).put_object(Bucket=stack.settings.capture_bucket, Key=key, Body=data)
    return key


def schedule_event(execution_id: str = "c7b2e9f4a1d35806", attempt: int = 1) -> dict[str, Any]:
    """What EventBridge Scheduler sends the drift monitor (shaped like events/drift_monitor_schedule.json)."""
    return {**load_event("drift_monitor_schedule"), "execution_id": execution_id, "attempt": str(attempt)}


def drift_datapoints(stack: Stack, metric: str = "MaxFeaturePSI") -> int:
    """How many values of an endpoint-level drift metric were published (every PutMetricData counts)."""
    now = datetime.now(UTC)
    response = client(stack, "cloudwatch").get_metric_statistics(
        Namespace=stack.settings.drift_metrics_namespace,
        MetricName=metric,
        Dimensions=[{"Name": "Endpoint", "Value": stack.settings.endpoint_name}],
        StartTime=now - timedelta(hours=2),
        EndTime=now + timedelta(hours=1),
        Period=3600,
        Statistics=["SampleCount"],
    )
    return int(sum(point["SampleCount"] for point in response["Datapoints"]))


def watermark(stack: Stack) -> dict[str, Any] | None:
    return ledger(stack).get_state(ledger_keys.capture_watermark(stack.settings.endpoint_name))
