"""Route 4's queue: model package state changes wait here until a deployment can be decided.

EventBridge puts each state change on an SQS queue; one function (reserved concurrency 1, batch
size 1) takes them one at a time. What happens to a record:
* decided (deployed, skipped, refused…) → deleted from the queue;
* retryable failure (the endpoint is busy with another deployment, throttling, a 5xx) → left on
  the queue with its visibility timeout raised to an exponential backoff (1, 2, 4, 8, then every
  15 minutes), so it comes back after the running deployment has finished; after the queue's
  `maxReceiveCount` SQS moves it to the dead-letter queue;
* permanent failure (a malformed event, AccessDenied, an endpoint only a person can repair) →
  recorded in the ledger, notified, and moved to the dead-letter queue at once, with the error as
  message attributes, so it can be redriven once the cause is fixed.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, cast

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError

from closedloop import routes
from closedloop.aws import aws_errors
from closedloop.deploy.policy import backoff_seconds
from closedloop.deploy.rollout import Rollout
from closedloop.errors import ClosedloopError, EndpointBusyError, InvalidEventError
from closedloop.events.base import validation_problems
from closedloop.events.registry import ModelPackageStateChangeEvent
from closedloop.events.sqs import PartialBatchResponse, SqsRecordModel, process_partial_batch
from closedloop.ledger import Ledger
from closedloop.line import PerLine
from closedloop.notify import Notifier
from closedloop.observability import logger, metrics
from closedloop.route_output import RouteOutput

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_sqs import SQSClient

MAX_ATTRIBUTE = 1000


class ApprovalQueue:
    """Handles one SQS batch of model package state changes (partial batch responses)."""

    def __init__(self, *, rollouts: PerLine[Rollout], ledger: Ledger, notifier: Notifier, sqs: SQSClient) -> None:
        self._rollouts = rollouts  # each line's rollout: its group, its endpoint
        self._context: LambdaContext | None = None
        self._output = RouteOutput(routes.MODEL_APPROVAL, ledger, notifier)  # no line: the batch is of any line
        self._sqs = sqs
        self._queue_urls: dict[str, str] = {}
        self._dead_letter_urls: dict[str, str] = {}

    def handle(self, event: dict[str, Any], context: LambdaContext | None) -> PartialBatchResponse:
        """Decide every record; returns the partial batch response (records to retry)."""
        self._context = context
        return process_partial_batch(event.get("Records", []), self._handle_record)

    def _handle_record(self, record: SqsRecordModel) -> str:
        try:
            parsed = ModelPackageStateChangeEvent.model_validate_json(cast(str, record.body))
        except ValidationError as exc:
            error = InvalidEventError(
                "malformed model package state change", message_id=record.messageId, problems=validation_problems(exc)
            )
            self._give_up(record, error, None)
            return "dead-lettered"
        try:
            rollout = self._rollouts[self._rollouts.catalog.by_model_group(parsed.detail.group)]
            rollout.register_lambda_context(self._context)
            outcome = rollout.handle(parsed)
        except ClosedloopError as exc:
            if not exc.retryable:
                self._give_up(record, exc, parsed)
                return "dead-lettered"
            self._retry_later(record, exc, parsed)
            raise
        except Exception as exc:  # an unforeseen error: back off and let SQS count the receives
            logger.exception("status change failed unexpectedly", message_id=record.messageId)
            self._retry_later(record, ClosedloopError(f"{type(exc).__name__}: {exc}", retryable=True), parsed)
            raise
        metrics.add_metric(
            name=f"ApprovalEvents{outcome.result.title().replace('_', '')}", unit=MetricUnit.Count, value=1
        )
        return outcome.result

    # -- retry with backoff ------------------------------------------------------------------------

    def _retry_later(self, record: SqsRecordModel, exc: ClosedloopError, parsed: ModelPackageStateChangeEvent) -> None:
        receives = int(record.attributes.ApproximateReceiveCount or 1)
        delay = backoff_seconds(receives)
        logger.warning(
            "status change will be retried",
            message_id=record.messageId,
            receives=receives,
            retry_in_s=delay,
            error=exc.as_dict(),
        )
        metrics.add_metric(name="ApprovalEventsRetried", unit=MetricUnit.Count, value=1)
        if isinstance(exc, EndpointBusyError):
            self._output.record(
                event_id=parsed.id,
                business_key=parsed.detail.arn,
                action="wait",
                result="endpoint_busy",
                reason=exc.message,
                details={**exc.as_dict(), "receives": receives, "retry_in_s": delay},
            )
        # what `closedloop dlq show` reports if this message ends in the DLQ after its last receive
        self._output.record(
            event_id=parsed.id,
            business_key=f"sqs:{record.messageId}",
            action="retry",
            result="retry_later",
            reason=exc.message,
            details={**exc.as_dict(), "receives": receives, "retry_in_s": delay},
        )
        try:
            with aws_errors("sqs:ChangeMessageVisibility"):
                self._sqs.change_message_visibility(
                    QueueUrl=self._queue_url(record.eventSourceARN),
                    ReceiptHandle=record.receiptHandle,
                    VisibilityTimeout=delay,
                )
        except ClosedloopError as backoff_error:  # the queue's own visibility timeout applies instead
            logger.warning("backoff not set", message_id=record.messageId, error=backoff_error.as_dict())

    # -- give up: ledger, notification, dead-letter queue ------------------------------------------------

    def _give_up(
        self, record: SqsRecordModel, exc: ClosedloopError, parsed: ModelPackageStateChangeEvent | None
    ) -> None:
        """Move a record that no retry can help to the DLQ (raises if it cannot be moved: SQS keeps it)."""
        logger.error("status change cannot be handled", message_id=record.messageId, error=exc.as_dict())
        metrics.add_metric(name="ApprovalEventsDeadLettered", unit=MetricUnit.Count, value=1)
        dead_letter_url = self._dead_letter_url(record.eventSourceARN)
        with aws_errors("sqs:SendMessage(dead letter)"):
            sent = self._sqs.send_message(
                QueueUrl=dead_letter_url,
                MessageBody=cast(str, record.body),
                MessageAttributes={
                    "closedloop-error": {"DataType": "String", "StringValue": exc.code},
                    "closedloop-reason": {"DataType": "String", "StringValue": exc.message[:MAX_ATTRIBUTE] or "-"},
                    "closedloop-source-queue": {"DataType": "String", "StringValue": record.eventSourceARN},
                    "closedloop-source-message-id": {"DataType": "String", "StringValue": record.messageId},
                },
            )
        event_id = parsed.id if parsed else record.messageId
        key = parsed.detail.arn if parsed else f"sqs:{record.messageId}"
        try:
            for business_key in (key, f"sqs:{sent['MessageId']}"):  # the version's history; the DLQ's reason
                self._output.record(
                    event_id=event_id,
                    business_key=business_key,
                    action="handle_event",
                    result="failed",
                    reason=exc.message,
                    details=exc.as_dict(),
                )
            self._output.notify(
                "A model approval could not be handled; the event is in the dead-letter queue",
                severity="ERROR",
                model_package_arn=parsed.detail.arn if parsed else "",
                status=parsed.detail.approval_status if parsed else "",
                event_id=event_id,
                error=exc.as_dict(),
                dead_letter_queue=dead_letter_url,
            )
        except ClosedloopError as report_error:  # the event is safe in the DLQ; say so in the log
            logger.error("failure not reported", message_id=record.messageId, error=report_error.as_dict())

    # -- queue addresses ------------------------------------------------------------------------------

    def _queue_url(self, queue_arn: str) -> str:
        if queue_arn not in self._queue_urls:
            *_, account, name = queue_arn.split(":")
            with aws_errors("sqs:GetQueueUrl"):
                url = self._sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
            self._queue_urls[queue_arn] = url
        return self._queue_urls[queue_arn]

    def _dead_letter_url(self, queue_arn: str) -> str:
        """The DLQ of the source queue, from its redrive policy.

        Raises:
            AwsServiceError: the queue has no redrive policy (retryable: SQS keeps the record).
        """
        if queue_arn not in self._dead_letter_urls:
            with aws_errors("sqs:GetQueueAttributes"):
                attributes = self._sqs.get_queue_attributes(
                    QueueUrl=self._queue_url(queue_arn), AttributeNames=["RedrivePolicy"]
                ).get("Attributes", {})
            policy = json.loads(attributes.get("RedrivePolicy") or "{}")
            target = str(policy.get("deadLetterTargetArn", ""))
            if not target:
                raise ClosedloopError(f"queue {queue_arn} has no dead-letter queue", retryable=True)
            self._dead_letter_urls[queue_arn] = self._queue_url(target)
        return self._dead_letter_urls[queue_arn]
