"""The exact PutMetricData requests of one drift measurement (pure; no I/O)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from closedloop.drift.sketch import DriftReport

METRICS_PER_REQUEST = 20  # conservative: fits every PutMetricData limit, old and new


def _datum(name: str, value: float, at: datetime, dimensions: dict[str, str], unit: str = "None") -> dict[str, Any]:
    return {
        "MetricName": name,
        "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
        "Timestamp": at,
        "Value": value,
        "Unit": unit,
    }


def build_metric_data(report: DriftReport, *, endpoint: str, at: datetime) -> list[dict[str, Any]]:
    """Every metric datum of a report: per feature (Endpoint, Feature), then per endpoint.

    `FeaturePSI` for every feature and `FeatureKS` for numeric ones; `MaxFeaturePSI`,
    `MaxFeatureKS`, `PredictionPSI`, `PredictionKS` and `BiasDrift` when they could be measured;
    `CapturedRecords` always. Values that are not finite are left out (CloudWatch rejects them).
    """
    data: list[dict[str, Any]] = []
    for feature in report.features:
        dimensions = {"Endpoint": endpoint, "Feature": feature.feature}
        data.append(_datum("FeaturePSI", feature.psi, at, dimensions))
        if feature.ks is not None:
            data.append(_datum("FeatureKS", feature.ks, at, dimensions))
    per_endpoint = {
        "MaxFeaturePSI": report.max_feature_psi,
        "MaxFeatureKS": report.max_feature_ks,
        "PredictionPSI": report.prediction_psi,
        "PredictionKS": report.prediction_ks,
        "BiasDrift": report.bias.drift if report.bias else None,
    }
    for name, value in per_endpoint.items():
        if value is not None:
            data.append(_datum(name, value, at, {"Endpoint": endpoint}))
    data.append(_datum("CapturedRecords", float(report.records), at, {"Endpoint": endpoint}, unit="Count"))
    return [d for d in data if math.isfinite(d["Value"])]


def build_put_metric_data_requests(
    report: DriftReport, *, namespace: str, endpoint: str, at: datetime
) -> list[dict[str, Any]]:
    """PutMetricData requests (keyword arguments) carrying `build_metric_data`, in batches."""
    data = build_metric_data(report, endpoint=endpoint, at=at)
    return [
        {"Namespace": namespace, "MetricData": data[i : i + METRICS_PER_REQUEST]}
        for i in range(0, len(data), METRICS_PER_REQUEST)
    ]


def build_attribution_metric_request(*, namespace: str, endpoint: str, ndcg: float, at: datetime) -> dict[str, Any]:
    """PutMetricData (keyword arguments) of one attribution drift measurement: `AttributionNdcg`,
    dimension Endpoint like the other endpoint-level drift metrics."""
    return {"Namespace": namespace, "MetricData": [_datum("AttributionNdcg", ndcg, at, {"Endpoint": endpoint})]}
