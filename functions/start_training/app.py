"""Route 2: a preparation run ended (Glue or Processing) → the training pipeline starts, or the failure is reported."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from closedloop import aws
from closedloop.events.jobs import parse_prep_job_event
from closedloop.idempotency import persistence_layer
from closedloop.ledger import Ledger
from closedloop.notify import Notifier
from closedloop.observability import EVENTBRIDGE_CORRELATION, logger, metrics, tracer
from closedloop.settings import load_settings
from closedloop.training.service import TrainingStarter

settings = load_settings()
starter = TrainingStarter(
    settings=settings,
    s3=aws.s3(),
    sagemaker=aws.sagemaker(),
    glue=aws.glue(),
    ledger=Ledger(settings.ledger_table, aws.dynamodb()),
    notifier=Notifier(settings.notification_topic_arn, aws.sns()),
    idempotency_store=persistence_layer(settings.idempotency_table, aws.dynamodb()),
)


@logger.inject_lambda_context(correlation_id_path=EVENTBRIDGE_CORRELATION, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Start training on a finished preparation run, or report why not."""
    starter.register_lambda_context(context)
    return starter.handle(parse_prep_job_event(event)).model_dump(mode="json")
