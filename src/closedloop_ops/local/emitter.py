"""AWS service events that moto does not emit, in exactly the format AWS publishes them.

Each builder returns one EventBridge event shaped like the project's `events/` samples (and AWS's
published examples): the envelope (`version`, `id`, `detail-type`, `source`, `account`, `time`,
`region`, `resources`) and the service's `detail`, with the service's own quirks (epoch-millisecond
times in SageMaker job and model-package details, upper-case endpoint statuses, Glue's
severity). `publish` hands the event to moto's EventBridge, which routes it by the template's rules.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

ACCOUNT = "123456789012"


def epoch_ms(value: Any) -> int | None:
    """SageMaker details carry times as epoch milliseconds."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, int | float):
        return int(value if value > 1e11 else value * 1000)
    try:
        return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def iso(value: Any) -> str:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int | float):
        moment = datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC)
    else:
        return str(value)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


class Emitter:
    """Builds and publishes AWS service events for one account and region."""

    def __init__(self, region: str, account: str = ACCOUNT) -> None:
        self.region = region
        self.account = account
        self.published: list[dict[str, Any]] = []

    def envelope(
        self, source: str, detail_type: str, resources: list[str], detail: Mapping[str, Any], at: datetime | None = None
    ) -> dict[str, Any]:
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": detail_type,
            "source": source,
            "account": self.account,
            "time": iso(at or datetime.now(UTC)),
            "region": self.region,
            "resources": resources,
            "detail": _jsonable(dict(detail)),
        }

    def publish(self, event: dict[str, Any]) -> dict[str, Any]:
        """Route one event through moto's EventBridge (default bus) by the stack's rules."""
        from moto.events.models import events_backends

        backend = events_backends[self.account][self.region]
        routed = copy.deepcopy(event)
        # moto formats `time` when it delivers to a queue; it expects a unix time there
        routed["time"] = datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp()
        for bus in backend.event_buses.values():
            for rule in list(bus.rules.values()):
                rule.send_to_targets(copy.deepcopy(routed), transform_input=False)
        self.published.append(event)
        return event

    # -- SageMaker ------------------------------------------------------------------------------

    def processing_job_state_change(self, described: Mapping[str, Any]) -> dict[str, Any]:
        """`SageMaker Processing Job State Change`: the DescribeProcessingJob view, times in epoch ms."""
        detail = {k: v for k, v in described.items() if k != "ResponseMetadata"}
        for key in ("ProcessingEndTime", "ProcessingStartTime", "LastModifiedTime", "CreationTime"):
            if key in detail:
                detail[key] = epoch_ms(detail[key])
        return self.envelope(
            "aws.sagemaker", "SageMaker Processing Job State Change", [described["ProcessingJobArn"]], detail
        )

    def pipeline_execution_status_change(
        self,
        *,
        pipeline_arn: str,
        execution_arn: str,
        display_name: str,
        current: str,
        previous: str,
        started: Any,
        ended: Any | None,
        description: str = "",
    ) -> dict[str, Any]:
        """`SageMaker Model Building Pipeline Execution Status Change` (ISO times, as AWS sends)."""
        detail: dict[str, Any] = {
            "pipelineExecutionDisplayName": display_name,
            "currentPipelineExecutionStatus": current,
            "previousPipelineExecutionStatus": previous,
            "executionStartTime": iso(started),
            "pipelineArn": pipeline_arn,
            "pipelineExecutionArn": execution_arn,
        }
        if ended is not None:
            detail["executionEndTime"] = iso(ended)
        if description:
            detail["pipelineExecutionDescription"] = description
        return self.envelope(
            "aws.sagemaker",
            "SageMaker Model Building Pipeline Execution Status Change",
            [pipeline_arn, execution_arn],
            detail,
        )

    def model_package_state_change(self, described: Mapping[str, Any]) -> dict[str, Any]:
        """`SageMaker Model Package State Change`: the DescribeModelPackage view, CreationTime in epoch ms."""
        keep = (
            "ModelPackageGroupName",
            "ModelPackageVersion",
            "ModelPackageArn",
            "ModelPackageDescription",
            "CreationTime",
            "InferenceSpecification",
            "ModelPackageStatus",
            "ModelApprovalStatus",
            "ApprovalDescription",
            "CustomerMetadataProperties",
            "ModelMetrics",
            "DriftCheckBaselines",
            "LastModifiedTime",
            "CreatedBy",
            "LastModifiedBy",
        )
        detail = {k: described[k] for k in keep if k in described}
        detail["ModelPackageName"] = f"{described.get('ModelPackageGroupName')}/{described.get('ModelPackageVersion')}"
        for key in ("CreationTime", "LastModifiedTime"):
            if key in detail:
                detail[key] = epoch_ms(detail[key])
        return self.envelope(
            "aws.sagemaker", "SageMaker Model Package State Change", [described["ModelPackageArn"]], detail
        )

    def endpoint_state_change(self, described: Mapping[str, Any]) -> dict[str, Any]:
        """`SageMaker Endpoint State Change` (statuses upper-case with underscores, as AWS sends)."""
        detail = {
            "EndpointName": described["EndpointName"],
            "EndpointArn": described["EndpointArn"],
            "EndpointConfigName": described.get("EndpointConfigName"),
            "ProductionVariants": [
                {
                    k: v
                    for k, v in variant.items()
                    if k
                    in {"VariantName", "CurrentWeight", "DesiredWeight", "CurrentInstanceCount", "DesiredInstanceCount"}
                }
                for variant in described.get("ProductionVariants", [])
            ],
            "EndpointStatus": _upper_status(described["EndpointStatus"]),
            "CreationTime": epoch_ms(described.get("CreationTime")),
            "LastModifiedTime": epoch_ms(described.get("LastModifiedTime")),
            "Tags": {},
        }
        if described.get("FailureReason"):
            detail["FailureReason"] = described["FailureReason"]
        return self.envelope("aws.sagemaker", "SageMaker Endpoint State Change", [described["EndpointArn"]], detail)

    def endpoint_deployment_state_change(
        self,
        described: Mapping[str, Any],
        *,
        pending_config: str | None,
        variant_status: str | None,
        status_message: str = "",
    ) -> dict[str, Any]:
        """`SageMaker Endpoint Deployment State Change` (blue/green progress of an UpdateEndpoint)."""
        event = self.endpoint_state_change(described)
        event["detail-type"] = "SageMaker Endpoint Deployment State Change"
        if pending_config:
            now = epoch_ms(datetime.now(UTC))
            event["detail"]["PendingDeploymentSummary"] = {
                "EndpointConfigName": pending_config,
                "StartTime": now,
                "ProductionVariants": [
                    {
                        "VariantName": "AllTraffic",
                        "VariantStatus": [
                            {"Status": variant_status or "Updating", "StatusMessage": status_message, "StartTime": now}
                        ],
                    }
                ],
            }
        return event

    # -- Glue --------------------------------------------------------------------------------------

    def glue_job_state_change(self, *, job_name: str, run_id: str, state: str, message: str) -> dict[str, Any]:
        """`Glue Job State Change` (terminal states only; severity as Glue sets it)."""
        severity = {"SUCCEEDED": "INFO", "TIMEOUT": "WARN", "STOPPED": "INFO"}.get(state, "ERROR")
        detail = {"jobName": job_name, "severity": severity, "state": state, "jobRunId": run_id, "message": message}
        return self.envelope("aws.glue", "Glue Job State Change", [], detail)

    # -- CloudWatch --------------------------------------------------------------------------------

    def alarm_state_change(
        self, alarm: Mapping[str, Any], *, previous: Mapping[str, Any], current: Mapping[str, Any]
    ) -> dict[str, Any]:
        """`CloudWatch Alarm State Change` for a single-metric alarm (DescribeAlarms view)."""
        configuration: dict[str, Any] = {"description": alarm.get("AlarmDescription", "")}
        if alarm.get("MetricName"):
            configuration["metrics"] = [
                {
                    "id": str(uuid.uuid5(uuid.NAMESPACE_URL, alarm["AlarmArn"])),
                    "metricStat": {
                        "metric": {
                            "dimensions": {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])},
                            "name": alarm["MetricName"],
                            "namespace": alarm["Namespace"],
                        },
                        "period": alarm.get("Period", 300),
                        "stat": alarm.get("Statistic", "Maximum"),
                    },
                    "returnData": True,
                }
            ]
        detail = {
            "alarmName": alarm["AlarmName"],
            "configuration": configuration,
            "previousState": dict(previous),
            "state": dict(current),
        }
        return self.envelope("aws.cloudwatch", "CloudWatch Alarm State Change", [alarm["AlarmArn"]], detail)


def _upper_status(status: str) -> str:
    """`InService` → `IN_SERVICE`, `RollingBack` → `ROLLING_BACK` (the event's spelling)."""
    out = []
    for index, char in enumerate(status):
        if char.isupper() and index:
            out.append("_")
        out.append(char.upper())
    return "".join(out)
