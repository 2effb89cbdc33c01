"""Route 7: EventBridge Scheduler → measure the live endpoint's drift and publish it to CloudWatch."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from closedloop import aws
from closedloop.drift.monitor import DriftMonitor
from closedloop.events.scheduler import SCHEDULER_CORRELATION, parse_drift_run
from closedloop.ledger import Ledger
from closedloop.line import PerLine
from closedloop.observability import logger, metrics, tracer
from closedloop.settings import load_settings

settings = load_settings()
ledger = Ledger(settings.ledger_table, aws.dynamodb())
# the clients are this function's, taken at cold start; each line's monitor is built on its first run
s3, sagemaker, cloudwatch = aws.s3(), aws.sagemaker(), aws.cloudwatch()
monitors = PerLine(
    settings,
    lambda line_settings: DriftMonitor(
        settings=line_settings,
        s3=s3,
        sagemaker=sagemaker,
        cloudwatch=cloudwatch,
        ledger=ledger,
        settle=timedelta(seconds=settings.drift_capture_settle_s),
    ),
)


@logger.inject_lambda_context(correlation_id_path=SCHEDULER_CORRELATION, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Measure drift of the traffic captured since the last run; publish it when there is enough."""
    run = parse_drift_run(event)
    return (
        monitors.deployed(run.line)
        .handle(run, remaining_s=lambda: context.get_remaining_time_in_millis() / 1000)
        .model_dump(mode="json")
    )
