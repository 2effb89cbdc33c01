"""Route 4: model package Approved / Rejected (EventBridge → SQS, one at a time) → blue/green rollout or rollback."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from closedloop import aws
from closedloop.deploy.queue import ApprovalQueue
from closedloop.deploy.requests import validate_rollout_settings
from closedloop.deploy.rollout import Rollout
from closedloop.idempotency import persistence_layer
from closedloop.ledger import Ledger
from closedloop.line import PerLine
from closedloop.notify import Notifier
from closedloop.observability import SQS_CORRELATION, logger, metrics, tracer
from closedloop.settings import load_settings

settings = load_settings()
validate_rollout_settings(settings)  # at cold start: a bad parameter fails the deployment, not an event
ledger = Ledger(settings.ledger_table, aws.dynamodb())
notifier = Notifier(settings.notification_topic_arn, aws.sns())
idempotency_store = persistence_layer(settings.idempotency_table, aws.dynamodb())
# the clients are this function's, taken at cold start; each line's rollout is built on its first event
sagemaker, cloudwatch = aws.sagemaker(), aws.cloudwatch()
approvals = ApprovalQueue(
    rollouts=PerLine(
        settings,
        lambda line_settings: Rollout(
            settings=line_settings,
            sagemaker=sagemaker,
            cloudwatch=cloudwatch,
            ledger=ledger,
            notifier=notifier,
            idempotency_store=idempotency_store,
        ),
    ),
    ledger=ledger,
    notifier=notifier,
    sqs=aws.sqs(),
)


@logger.inject_lambda_context(correlation_id_path=SQS_CORRELATION, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Decide and start the deployment a model approval or rejection calls for; returns the partial batch response."""
    return dict(approvals.handle(event, context))
