"""What the pages read from the stack, beyond what the command line's functions already return.

Each function takes a `StackRef` (a deployed stack or the local loop alike) and returns figures,
names and times — never a data value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from closedloop_ops.stackref import StackRef

# The drift monitor's per-endpoint metrics (closedloop.drift.requests), in the order the page shows them.
DRIFT_METRICS = ("MaxFeaturePSI", "PredictionKS", "PredictionPSI", "MaxFeatureKS", "BiasDrift", "CapturedRecords")
# Windows the drift page offers: (name, length, period). GetMetricStatistics returns at most 1,440
# datapoints per call, so the period grows with the window.
WINDOWS = {
    "20m": (timedelta(minutes=20), 1),
    "3h": (timedelta(hours=3), 10),
    "24h": (timedelta(hours=24), 60),
    "7d": (timedelta(days=7), 600),
}


def versions(stack: StackRef, group: str) -> list[dict[str, Any]]:
    """Every version of a model group, newest first: number, status, registration time."""
    sm = stack.client("sagemaker")
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = sm.list_model_packages(
            ModelPackageGroupName=group, MaxResults=100, **({"NextToken": token} if token else {})
        )
        found += [
            {
                "version": summary.get("ModelPackageVersion"),
                "status": summary.get("ModelApprovalStatus"),
                "created": summary.get("CreationTime"),
                "arn": summary.get("ModelPackageArn"),
            }
            for summary in page.get("ModelPackageSummaryList", [])
        ]
        token = page.get("NextToken")
        if not token:
            break
    return sorted(found, key=lambda v: int(v["version"] or 0), reverse=True)


@dataclass
class Series:
    metric: str
    points: list[tuple[datetime, float]]
    threshold: float | None = None
    alarm: str | None = None
    alarm_state: str | None = None


@dataclass
class DriftView:
    namespace: str
    line: str
    endpoint: str
    start: datetime
    end: datetime
    period: int
    series: list[Series]
    alarm_moments: list[tuple[datetime, str]] = field(default_factory=list)
    features: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def drift(stack: StackRef, window: str = "24h", now: datetime | None = None, line: str | None = None) -> DriftView:
    """The drift monitor's metrics of one model line's endpoint over the window (`line`, default the
    stack's first line), each with the line's alarm that watches it and the moments one of those
    alarms went to ALARM (CloudWatch alarm history, and the retraining route's ledger decisions).

    Raises:
        CliError: `line` is not a line of the stack.
    """
    from closedloop_ops.operations import audit

    settings = stack.settings()
    owned = stack.line(line) if line else stack.lines()[0]
    length, period = WINDOWS.get(window, WINDOWS["24h"])
    end = now or datetime.now(UTC)
    start = end - length
    cloudwatch = stack.client("cloudwatch")
    namespace, endpoint = settings.drift_metrics_namespace, owned.endpoint_name
    alarms = [
        a
        for a in cloudwatch.describe_alarms(AlarmNames=list(owned.drift_alarms), AlarmTypes=["MetricAlarm"]).get(
            "MetricAlarms", []
        )
        if a.get("Namespace") == namespace
    ]
    series = []
    for metric in DRIFT_METRICS:
        points = cloudwatch.get_metric_statistics(
            Namespace=namespace,
            MetricName=metric,
            Dimensions=[{"Name": "Endpoint", "Value": endpoint}],
            StartTime=start,
            EndTime=end,
            Period=period,
            Statistics=["Maximum"],
        )["Datapoints"]
        watching = next((a for a in alarms if a.get("MetricName") == metric), None)
        series.append(
            Series(
                metric=metric,
                points=sorted((_aware(p["Timestamp"]), float(p["Maximum"])) for p in points),
                threshold=float(watching["Threshold"]) if watching else None,
                alarm=watching["AlarmName"] if watching else None,
                alarm_state=watching.get("StateValue") if watching else None,
            )
        )
    view = DriftView(namespace, owned.line, endpoint, start, end, period, series)
    moments: set[tuple[datetime, str]] = set()
    for alarm in alarms:
        if alarm.get("StateValue") == "ALARM" and alarm.get("StateUpdatedTimestamp"):
            moments.add((_aware(alarm["StateUpdatedTimestamp"]).replace(microsecond=0), alarm["AlarmName"]))
        try:
            history = cloudwatch.describe_alarm_history(
                AlarmName=alarm["AlarmName"], HistoryItemType="StateUpdate", StartDate=start, EndDate=end
            ).get("AlarmHistoryItems", [])
        except Exception as exc:
            view.notes.append(f"alarm history of {alarm['AlarmName']} unavailable ({type(exc).__name__})")
            continue
        for item in history:
            if "to ALARM" in str(item.get("HistorySummary", "")):
                moments.add((_aware(item["Timestamp"]).replace(microsecond=0), alarm["AlarmName"]))
    for decision in audit(stack, start, end):
        if decision.route == "alarm" and decision.business_key.startswith("alarm:"):
            name, _, at = decision.business_key.removeprefix("alarm:").partition("@")
            if name not in owned.drift_alarms:
                continue
            try:
                moment = datetime.strptime(at, "%Y-%m-%dT%H:%M:%S.%f%z")
            except ValueError:
                moment = decision.at
            moments.add((moment.astimezone(UTC).replace(microsecond=0), name))
    view.alarm_moments = sorted(moments)
    view.features = _features(cloudwatch, namespace, endpoint, start, end)
    return view


def _features(cloudwatch: Any, namespace: str, endpoint: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The newest PSI (and KS) per feature in the window: feature names and figures."""
    rows: dict[str, dict[str, Any]] = {}
    for metric in ("FeaturePSI", "FeatureKS"):
        listed = cloudwatch.list_metrics(
            Namespace=namespace, MetricName=metric, Dimensions=[{"Name": "Endpoint", "Value": endpoint}]
        ).get("Metrics", [])
        for entry in listed:
            dimensions = {d["Name"]: d["Value"] for d in entry.get("Dimensions", [])}
            feature = dimensions.get("Feature")
            if not feature or dimensions.get("Endpoint") != endpoint:
                continue
            points = cloudwatch.get_metric_statistics(
                Namespace=namespace,
                MetricName=metric,
                Dimensions=entry["Dimensions"],
                StartTime=start,
                EndTime=end,
                Period=int((end - start).total_seconds()),
                Statistics=["Maximum"],
            )["Datapoints"]
            if points:
                newest = max(points, key=lambda p: p["Timestamp"])
                rows.setdefault(feature, {"feature": feature})[metric] = float(newest["Maximum"])
    return sorted(rows.values(), key=lambda r: -(r.get("FeaturePSI") or 0.0))


def audit_rows(
    stack: StackRef, since: datetime, until: datetime | None, route: str = "", result: str = ""
) -> tuple[list[Any], list[str], list[str]]:
    """The ledger's decisions in [since, until) filtered by route and result, with the routes and
    results there are to choose from."""
    from closedloop_ops.operations import audit

    decisions = audit(stack, since, until)
    routes = sorted({d.route for d in decisions})
    results = sorted({d.result for d in decisions})
    chosen = [d for d in decisions if (not route or d.route == route) and (not result or d.result == result)]
    return chosen, routes, results
