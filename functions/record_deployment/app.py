"""Route 5: SageMaker endpoint (deployment) state change → outcome recorded, tagged and notified."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from closedloop import aws
from closedloop.deploy.outcome import DeploymentRecorder
from closedloop.errors import InvalidEventError
from closedloop.events.base import validation_problems
from closedloop.events.endpoint import ENDPOINT_EVENT
from closedloop.ledger import Ledger
from closedloop.line import PerLine
from closedloop.notify import Notifier
from closedloop.observability import EVENTBRIDGE_CORRELATION, logger, metrics, tracer
from closedloop.settings import load_settings
from closedloop.stages import StageEvents

settings = load_settings()
ledger = Ledger(settings.ledger_table, aws.dynamodb())
notifier = Notifier(settings.notification_topic_arn, aws.sns())
sagemaker = aws.sagemaker()  # this function's client, taken at cold start
stage_events = StageEvents(aws.events())
recorders = PerLine(
    settings,
    lambda line_settings: DeploymentRecorder(
        settings=line_settings, sagemaker=sagemaker, ledger=ledger, notifier=notifier, stage_events=stage_events
    ),
)


@logger.inject_lambda_context(correlation_id_path=EVENTBRIDGE_CORRELATION, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Record what an endpoint event says about the pending deployment."""
    try:
        parsed = ENDPOINT_EVENT.validate_python(event)
    except ValidationError as exc:  # ends in the on-failure destination with the reason, no values
        problems = validation_problems(exc)
        raise InvalidEventError(f"malformed endpoint event: {problems}", problems=problems) from None
    recorder = recorders[recorders.catalog.by_endpoint(parsed.detail.endpoint_name)]
    return recorder.handle(parsed).model_dump(mode="json")
