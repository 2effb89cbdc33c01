"""Route 6: `aws.cloudwatch` / `CloudWatch Alarm State Change` into ALARM → one retraining, never a storm."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from closedloop import aws
from closedloop.events.cloudwatch import parse_alarm_event
from closedloop.idempotency import persistence_layer
from closedloop.ledger import Ledger
from closedloop.line import PerLine
from closedloop.observability import EVENTBRIDGE_CORRELATION, logger, metrics, tracer
from closedloop.retrain.service import AlarmRetraining
from closedloop.settings import load_settings

settings = load_settings()
ledger = Ledger(settings.ledger_table, aws.dynamodb())
idempotency_store = persistence_layer(settings.idempotency_table, aws.dynamodb())
# the clients are this function's, taken at cold start; each line's service is built on its first alarm
sagemaker, cloudwatch = aws.sagemaker(), aws.cloudwatch()
retrainings = PerLine(
    settings,
    lambda line_settings: AlarmRetraining(
        settings=line_settings,
        ledger=ledger,
        sagemaker=sagemaker,
        cloudwatch=cloudwatch,
        idempotency_store=idempotency_store,
    ),
)


@logger.inject_lambda_context(correlation_id_path=EVENTBRIDGE_CORRELATION, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Start a retraining for an alarm that entered ALARM, or record why it starts none."""
    alarm = parse_alarm_event(event)
    retraining = retrainings[retrainings.catalog.by_alarm(alarm.detail.alarm_name)]  # the alarm's line
    retraining.register_lambda_context(context)
    return retraining.handle(alarm).model_dump(mode="json")
