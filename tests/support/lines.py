"""Two model lines' worlds on moto (loans and churn), for the tests that keep the lines apart.

The route suites' helpers (`support.training`, `support.rollout`, `support.worlds`) build the loans
line's world; these build the same for any line, with the names `closedloop.line.LineResources`
gives it, from the same support code.
"""

from __future__ import annotations

import copy
import inspect
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from types import ModuleType
from typing import Any

from closedloop import ledger_keys, lineage
from closedloop.line import LineResources, load_line
from closedloop.retrain_lock import RetrainLock
from closedloop_ops.moto_ext.pipelines import record_execution_step
from closedloop_ops.synthetic import rows
from support.capture import baseline_document, capture_file, capture_key, deploy_live_model
from support.capture import bias_report as drift_bias_report
from support.events import load_event
from support.handlers import FakeLambdaContext
from support.rollout import Rollout
from support.stack import ACCOUNT, REGION, Stack
from support.training import evaluation_report, prepared_run, register_version, start_execution
from support.worlds import alarm_event, client, ledger

LINES = ("loans", "churn")
DRIFT_METRICS = (
    ("drift-features", "MaxFeaturePSI"),
    ("drift-predictions", "PredictionKS"),
    ("drift-bias", "BiasDrift"),
    ("drift-attributions", "AttributionNdcg"),
)


def owned(stack: Stack, line: str) -> LineResources:
    """The AWS names the stack gives a line."""
    return LineResources.of(stack.settings.resource_prefix, stack.settings.raw_prefix, line)


def unwrapped(handler: ModuleType) -> Callable[[dict[str, Any]], Any]:
    """The function's own `lambda_handler` code, without the process-wide Powertools decorators.

    For invocations at once in threads: Lambda runs them in separate environments, so the logger,
    metrics and tracer singletons one process shares are left out; the routing is the function's.
    """
    function = inspect.unwrap(handler.lambda_handler)
    context = FakeLambdaContext()
    return lambda event: function(event, context)


# -- route 1 ---------------------------------------------------------------------------------------


def processing_manifests(stack: Stack) -> dict[str, dict[str, Any]]:
    """The input manifest of every Processing job, by the job's name (read from its `--manifest` argument)."""
    sm = client(stack, "sagemaker")
    found: dict[str, dict[str, Any]] = {}
    for summary in sm.list_processing_jobs()["ProcessingJobSummaries"]:
        name = summary["ProcessingJobName"]
        arguments = sm.describe_processing_job(ProcessingJobName=name)["AppSpecification"]["ContainerArguments"]
        bucket, key = arguments[arguments.index("--manifest") + 1].removeprefix("s3://").split("/", 1)
        found[name] = json.loads(client(stack, "s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    return found


# -- route 3 ---------------------------------------------------------------------------------------


def line_bias_report(line: str, di: float = 0.94, dppl: float = 0.046) -> dict[str, Any]:
    """A post-training bias report on the line's own protected attribute (its last class disadvantaged)."""
    spec = load_line(line)
    attribute = spec.protected_attribute
    assert attribute is not None
    classes = spec.columns[attribute].classes
    assert classes is not None
    disadvantaged = classes[-1]
    report: dict[str, Any] = {
        "version": "1.0",
        "post_training_bias_metrics": {
            "label": spec.label,
            "label_value_or_threshold": spec.favourable_label,
            "facets": {
                attribute: [
                    {
                        "value_or_threshold": disadvantaged,
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
    return report


def executed_line_version(stack: Stack, line: str, *, auc: float) -> tuple[str, str]:
    """An execution started for the line's group that registered a version of it: (execution, package) ARNs."""
    group = owned(stack, line).model_package_group
    execution = start_execution(group=group)
    prepared = prepared_run(stack, uuid.uuid4().hex[:16], dataset=line)
    arn = register_version(
        stack,
        execution,
        group=group,
        evaluation=evaluation_report(auc=auc),
        bias=line_bias_report(line),
        prepared=prepared,
        metadata={lineage.DATASET: line},
    )
    record_execution_step(ACCOUNT, REGION, execution, name="Register", metadata={"RegisterModel": {"Arn": arn}})
    return execution, arn


def live_line_version(stack: Stack, line: str, *, auc: float) -> str:
    """An approved version of the line that its endpoint serves (the ledger's live version)."""
    _, arn = executed_line_version(stack, line, auc=auc)
    client(stack, "sagemaker").update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
    ledger(stack).put_state(
        ledger_keys.endpoint_state(owned(stack, line).endpoint_name),
        {"live_model_package_arn": arn, "live_version": int(arn.rsplit("/", 1)[1]), "status": "live"},
    )
    return arn


def hold_retrain_lock(stack: Stack, line: str, execution_arn: str) -> None:
    """The line's retraining lock, held for (and bound to) one execution, as route 6 leaves it."""
    lock = RetrainLock(ledger(stack), lease=timedelta(seconds=stack.settings.pipeline_max_runtime_s))
    group = owned(stack, line).model_package_group
    lock.acquire(group, f"test-holder:{line}", reason="retraining")
    lock.bind_execution(group, f"test-holder:{line}", execution_arn)


def retrain_lock_execution(stack: Stack, line: str) -> str | None:
    """The execution the line's retraining lock is bound to; None when the lock is free."""
    held = ledger(stack).get_lock(RetrainLock.name(owned(stack, line).model_package_group))
    return held.execution_arn if held is not None else None


# -- routes 4 and 5 ------------------------------------------------------------------------------------


def approved_line_version(world: Rollout, group: str) -> str:
    """A new version of `group`, approved by the approval gate's role."""
    arn = world.register(group)
    world.set_status(arn, "Approved")
    return arn


def endpoint_event(world: Rollout, endpoint: str) -> dict[str, Any]:
    """The endpoint state change event for `endpoint` as it is now (as `Rollout.endpoint_event` builds it)."""
    event = copy.deepcopy(load_event("endpoint_state_change"))
    event["id"] = str(uuid.uuid4())
    described = world.sm.describe_endpoint(EndpointName=endpoint)
    status = "".join(f"_{c}" if c.isupper() and i else c for i, c in enumerate(described["EndpointStatus"]))
    event["account"], event["region"] = ACCOUNT, REGION
    event["resources"] = [described["EndpointArn"]]
    event["detail"].update(
        EndpointName=endpoint,
        EndpointArn=described["EndpointArn"],
        EndpointConfigName=described["EndpointConfigName"],
        EndpointStatus=status.upper(),
    )
    event["detail"].pop("PendingDeploymentSummary", None)
    return event


def endpoint_state(stack: Stack, line: str) -> dict[str, Any]:
    """What the ledger says is live and pending on the line's endpoint."""
    return ledger(stack).get_state(ledger_keys.endpoint_state(owned(stack, line).endpoint_name)) or {}


def endpoints(stack: Stack) -> dict[str, str]:
    """Every endpoint in the account, with the endpoint config it serves."""
    listed = client(stack, "sagemaker").list_endpoints()["Endpoints"]
    sm = client(stack, "sagemaker")
    return {
        e["EndpointName"]: sm.describe_endpoint(EndpointName=e["EndpointName"])["EndpointConfigName"] for e in listed
    }


# -- route 6 --------------------------------------------------------------------------------------------


def retraining_lines(stack: Stack, lines: tuple[str, ...] = LINES) -> None:
    """For each line: its latest prepared data and its drift alarms, tagged with its group as the template does.

    The shared training pipeline must exist (`support.training.create_pipeline`).
    """
    cloudwatch = client(stack, "cloudwatch")
    for line in lines:
        names = owned(stack, line)
        ledger(stack).put_state(
            ledger_keys.latest_prepared(names.model_package_group),
            {
                "prepared_manifest_uri": f"s3://{stack.data_bucket}/prepared/{line}/run-{line}/manifest.json",
                "data_uri": f"s3://{stack.data_bucket}/prepared/{line}/run-{line}/data.csv",
                "prep_run_id": f"run-{line}",
                "dataset": line,
                "code_version": "sha256:0f3c",
            },
        )
        for (kind, metric), alarm in zip(DRIFT_METRICS, names.drift_alarms, strict=True):
            assert alarm.endswith(kind)
            cloudwatch.put_metric_alarm(
                AlarmName=alarm,
                Namespace=stack.settings.drift_metrics_namespace,
                MetricName=metric,
                Dimensions=[{"Name": "Endpoint", "Value": names.endpoint_name}],
                Statistic="Maximum",
                Period=3600,
                EvaluationPeriods=1,
                # nDCG alarms below its threshold, the other drift metrics above theirs
                Threshold=0.9 if metric == "AttributionNdcg" else 0.2,
                ComparisonOperator="LessThanThreshold" if metric == "AttributionNdcg" else "GreaterThanThreshold",
                TreatMissingData="notBreaching",
                Tags=[{"Key": "closedloop:model-group", "Value": names.model_package_group}],
            )


def drift_alarm_event(stack: Stack, line: str, kind: str = "drift-features", *, at: datetime) -> dict[str, Any]:
    """The line's drift alarm entering ALARM at `at`, as EventBridge delivers it."""
    return alarm_event(next(a for a in owned(stack, line).drift_alarms if a.endswith(f"-{kind}")), at=at)


def executions_by_group(stack: Stack) -> dict[str, list[str]]:
    """The shared pipeline's executions, by the model group each was started for."""
    sm = client(stack, "sagemaker")
    found: dict[str, list[str]] = {}
    pages = sm.get_paginator("list_pipeline_executions").paginate(PipelineName=stack.settings.pipeline_name)
    for summary in (s for page in pages for s in page["PipelineExecutionSummaries"]):
        arn = summary["PipelineExecutionArn"]
        listed = sm.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)["PipelineParameters"]
        group = next(p["Value"] for p in listed if p["Name"] == lineage.PARAM_MODEL_GROUP)
        found.setdefault(group, []).append(arn)
    return found


def cooldown(stack: Stack, line: str) -> dict[str, Any] | None:
    return ledger(stack).get_state(ledger_keys.cooldown(owned(stack, line).model_package_group))


def latest_prepared(stack: Stack, line: str) -> dict[str, Any] | None:
    return ledger(stack).get_state(ledger_keys.latest_prepared(owned(stack, line).model_package_group))


# -- route 7 ---------------------------------------------------------------------------------------------


@cache
def _baseline() -> dict[str, Any]:
    return baseline_document(n=1000, seed=1)


def drift_line(stack: Stack, line: str, *, records: int, seed: int) -> str:
    """The line's endpoint serves a version with its baseline; `records` rows were captured an hour ago.

    The baseline and the captured rows have the synthetic dataset's columns for every line: the drift
    monitor compares capture with the live version's own baseline, whatever the line's columns are.
    Returns the live model package ARN.
    """
    names = owned(stack, line)
    settings = stack.settings
    document = _baseline()
    package = deploy_live_model(
        account=ACCOUNT,
        region=REGION,
        endpoint=names.endpoint_name,
        model_group=names.model_package_group,
        evidence_bucket=settings.artifacts_bucket,
        capture_bucket=settings.capture_bucket,
        baseline=document,
        bias=drift_bias_report(dppl=document["bias"]["dppl"]),
        deployed_at=datetime.now(UTC) - timedelta(hours=3),
    )
    at = datetime.now(UTC) - timedelta(hours=1)
    client(stack, "s3").put_object(
        Bucket=settings.capture_bucket,
        Key=capture_key(names.endpoint_name, at),
        Body=capture_file(rows(records, seed=seed), start=at, rows_per_request=4),
    )
    return package


def drift_schedule_event(stack: Stack, line: str, execution_id: str) -> dict[str, Any]:
    """What the line's drift schedule sends the drift monitor (shaped like events/drift_monitor_schedule.json)."""
    schedule = f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/{owned(stack, line).drift_schedule}"
    return {
        **load_event("drift_monitor_schedule"),
        "line": line,
        "schedule_arn": schedule,
        "execution_id": execution_id,
    }


def drift_datapoints(stack: Stack, endpoint: str, metric: str = "MaxFeaturePSI") -> int:
    """How many values of an endpoint's drift metric were published."""
    now = datetime.now(UTC)
    response = client(stack, "cloudwatch").get_metric_statistics(
        Namespace=stack.settings.drift_metrics_namespace,
        MetricName=metric,
        Dimensions=[{"Name": "Endpoint", "Value": endpoint}],
        StartTime=now - timedelta(hours=2),
        EndTime=now + timedelta(hours=1),
        Period=3600,
        Statistics=["SampleCount"],
    )
    return int(sum(point["SampleCount"] for point in response["Datapoints"]))


def watermark(stack: Stack, line: str) -> dict[str, Any] | None:
    return ledger(stack).get_state(ledger_keys.capture_watermark(owned(stack, line).endpoint_name))
