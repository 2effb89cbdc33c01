"""Route 3: a training pipeline execution ended → lock released; its model version approved, rejected or sent on."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from closedloop import aws
from closedloop.approval.service import ApprovalGate, LineGates
from closedloop.events.pipeline import parse_pipeline_execution_event
from closedloop.idempotency import persistence_layer
from closedloop.ledger import Ledger
from closedloop.notify import Notifier
from closedloop.observability import EVENTBRIDGE_CORRELATION, logger, metrics, tracer
from closedloop.settings import load_settings

settings = load_settings()
# The clients and stores are this function's, taken at cold start; each line's gate is built on
# the line's first event and shares them.
s3, sagemaker = aws.s3(), aws.sagemaker()
ledger = Ledger(settings.ledger_table, aws.dynamodb())
notifier = Notifier(settings.notification_topic_arn, aws.sns())
idempotency_store = persistence_layer(settings.idempotency_table, aws.dynamodb())
gate = LineGates(
    settings=settings,
    sagemaker=sagemaker,
    build=lambda line_settings: ApprovalGate(
        settings=line_settings,
        s3=s3,
        sagemaker=sagemaker,
        ledger=ledger,
        notifier=notifier,
        idempotency_store=idempotency_store,
    ),
)


@logger.inject_lambda_context(correlation_id_path=EVENTBRIDGE_CORRELATION, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Release the retraining lock of an ended execution and gate the version it registered."""
    gate.register_lambda_context(context)
    return gate.handle(parse_pipeline_execution_event(event)).model_dump(mode="json")
