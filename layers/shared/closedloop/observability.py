"""The observability singletons every function shares (service name and namespace from POWERTOOLS_*).

Handlers decorate in a fixed order: correlation id (`logger.inject_lambda_context`) →
`metrics.log_metrics` → `tracer.capture_lambda_handler`. Logs carry keys, never event bodies or
data values.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths

from closedloop.tracing import tracer

logger = Logger(utc=True)
# X-Ray: the handler and every AWS call as subsegments of Lambda's trace, without the X-Ray SDK
# (closedloop.tracing; off with POWERTOOLS_TRACE_DISABLED, and outside Lambda).
metrics = Metrics()

EVENTBRIDGE_CORRELATION = correlation_paths.EVENT_BRIDGE
SQS_CORRELATION = "Records[0].messageId"

__all__ = ["EVENTBRIDGE_CORRELATION", "SQS_CORRELATION", "logger", "metrics", "tracer"]
