"""Route 6: `aws.cloudwatch` / `CloudWatch Alarm State Change` into ALARM → one retraining, never a storm."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from closedloop import aws
from closedloop.events.cloudwatch import parse_alarm_event
from closedloop.idempotency import persistence_layer
from closedloop.ledger import Ledger
from closedloop.observability import EVENTBRIDGE_CORRELATION, logger, metrics, tracer
from closedloop.retrain.service import AlarmRetraining
from closedloop.settings import load_settings

settings = load_settings()
retraining = AlarmRetraining(
    settings=settings,
    ledger=Ledger(settings.ledger_table, aws.dynamodb()),
    sagemaker=aws.sagemaker(),
    cloudwatch=aws.cloudwatch(),
    idempotency_store=persistence_layer(settings.idempotency_table, aws.dynamodb()),
)


@logger.inject_lambda_context(correlation_id_path=EVENTBRIDGE_CORRELATION, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Start a retraining for an alarm that entered ALARM, or record why it starts none."""
    retraining.register_lambda_context(context)
    return retraining.handle(parse_alarm_event(event)).model_dump(mode="json")
