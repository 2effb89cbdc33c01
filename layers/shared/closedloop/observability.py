"""The observability singletons every function shares (service name and namespace from POWERTOOLS_*).

Handlers decorate in a fixed order: correlation id (`logger.inject_lambda_context`) →
`metrics.log_metrics` → `tracer.capture_lambda_handler`. Logs carry keys, never event bodies or
data values.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths

logger = Logger(utc=True)
# Every outbound call is a boto3 call: X-Ray patches botocore only, not every library it supports
# (patch_all also patches http.client and probes a dozen database and HTTP clients at import).
# With tracing off (POWERTOOLS_TRACE_DISABLED, or outside Lambda) Powertools patches nothing.
tracer = Tracer(patch_modules=("botocore",))
metrics = Metrics()

EVENTBRIDGE_CORRELATION = correlation_paths.EVENT_BRIDGE
SQS_CORRELATION = "Records[0].messageId"

__all__ = ["EVENTBRIDGE_CORRELATION", "SQS_CORRELATION", "logger", "metrics", "tracer"]
