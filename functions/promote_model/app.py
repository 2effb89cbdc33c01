"""Route 8: a model version's stage change from another account → promoted into this stage, or recorded."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from closedloop import aws
from closedloop.errors import InvalidEventError
from closedloop.events.base import validation_problems
from closedloop.events.stage import StageChangeEvent
from closedloop.ledger import Ledger
from closedloop.line import PerLine
from closedloop.notify import Notifier
from closedloop.observability import EVENTBRIDGE_CORRELATION, logger, metrics, tracer
from closedloop.promotion.service import StageChanges
from closedloop.settings import load_settings
from closedloop.stages import StageEvents

settings = load_settings()
ledger = Ledger(settings.ledger_table, aws.dynamodb())
notifier = Notifier(settings.notification_topic_arn, aws.sns())
sagemaker = aws.sagemaker()  # this function's clients, taken at cold start
stage_events = StageEvents(aws.events())
stages = PerLine(
    settings,
    lambda line_settings: StageChanges(
        settings=line_settings, sagemaker=sagemaker, ledger=ledger, notifier=notifier, stage_events=stage_events
    ),
)


@logger.inject_lambda_context(correlation_id_path=EVENTBRIDGE_CORRELATION, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Promote a version live in the stage before, or record a later stage's change."""
    try:
        parsed = StageChangeEvent.model_validate(event)
    except ValidationError as exc:  # ends in the on-failure destination with the reason, no values
        problems = validation_problems(exc)
        raise InvalidEventError(f"malformed stage change event: {problems}", problems=problems) from None
    service = stages[stages.catalog.by_dataset(parsed.detail.line)]
    return service.handle(parsed).model_dump(mode="json")
