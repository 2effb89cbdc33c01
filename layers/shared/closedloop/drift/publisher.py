"""Adapter over CloudWatch for the drift monitor: one measurement's metrics (`build_put_metric_data_requests`)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from closedloop.aws import aws_errors
from closedloop.drift.requests import build_attribution_metric_request, build_put_metric_data_requests
from closedloop.drift.sketch import DriftReport

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient


class DriftPublisher:
    """Publishes drift reports as metrics in one namespace."""

    def __init__(self, cloudwatch: CloudWatchClient, namespace: str) -> None:
        self._cloudwatch = cloudwatch
        self.namespace = namespace

    def publish(self, report: DriftReport, *, endpoint: str, at: datetime) -> int:
        """Put every metric datum of the report, timestamped `at`; returns how many were put.

        Raises:
            AwsServiceError / ThrottledError: a batch could not be put (the batches before it were).
        """
        requests = build_put_metric_data_requests(report, namespace=self.namespace, endpoint=endpoint, at=at)
        for request in requests:
            with aws_errors("cloudwatch:PutMetricData"):
                self._cloudwatch.put_metric_data(**request)
        return sum(len(r["MetricData"]) for r in requests)

    def publish_attribution(self, ndcg: float, *, endpoint: str, at: datetime) -> None:
        """Put the endpoint's `AttributionNdcg`, timestamped `at`.

        Raises:
            AwsServiceError / ThrottledError: the metric could not be put.
        """
        request = build_attribution_metric_request(namespace=self.namespace, endpoint=endpoint, ndcg=ndcg, at=at)
        with aws_errors("cloudwatch:PutMetricData"):
            self._cloudwatch.put_metric_data(**request)
