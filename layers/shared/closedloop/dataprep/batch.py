"""Route 1's SQS batch: validate each record, then start one run per dataset for the whole batch.

An invocation that is not an SQS batch at all (S3's own `Records[]` notification, an EventBridge
event sent straight to the function) is refused as a whole with `InvalidEventError`, before any
record is looked at: the invocation fails, it is never a silent success.

`process_partial_batch` validates the SQS envelope of every record and builds the partial
batch response. Records are checked one by one (a bad one is rejected with a structured reason in
the ledger and reported as a batch item failure, so SQS redrives it to the DLQ after its last
receive); the valid ones are grouped and started together, and the records of a dataset whose run
could not start are reported as failures too, so SQS brings them back. Empty files are quarantined
with a report and a ledger decision (`quarantine.py`); folder markers are ignored (`Skipped`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError

from closedloop.dataprep.arrival import RawObject, Skipped, raw_object_from_event
from closedloop.dataprep.quarantine import EmptyUploadQuarantine, QuarantineOutcome
from closedloop.dataprep.service import ROUTE, DataPrepService, RunOutcome
from closedloop.errors import ClosedloopError, InvalidEventError
from closedloop.events.s3 import ClassicS3Notification, ObjectCreatedEvent, S3TestEvent, SqsBatch, look_alike
from closedloop.events.sqs import PartialBatchResponse, SqsRecordModel, process_partial_batch
from closedloop.ledger import Decision, Ledger
from closedloop.observability import logger, metrics
from closedloop.settings import Settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


def validation_summary(exc: ValidationError) -> list[dict[str, str]]:
    """Where and why a model rejected input — without the input values (they may hold PII)."""
    return [
        {"at": ".".join(map(str, err["loc"])) or "(root)", "problem": err["msg"]}
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ][:10]


EXPECTED_EVENT = "an SQS batch whose records carry EventBridge `Object Created` events"
# Per record: S3 formats that are not the EventBridge event, with what to fix (the bucket's classic
# notification configuration sends to the queue, instead of EventBridge through the rule).
_RECORD_LOOK_ALIKES: tuple[tuple[type[ClassicS3Notification | S3TestEvent], str], ...] = (
    (ClassicS3Notification, "record body is a classic S3 event notification, not an EventBridge Object Created event"),
    (S3TestEvent, "record body is an S3 test event (s3:TestEvent), not an EventBridge Object Created event"),
)
_RECORD_FIX = (
    "send the data bucket's events through EventBridge (NotificationConfiguration EventBridgeConfiguration) "
    "and the stack's rule, not a bucket notification to the queue"
)


def require_sqs_batch(event: Any) -> None:
    """Refuse an invocation that is not an SQS event-source batch, before any record is handled.

    Raises:
        InvalidEventError: the event has no `Records` list of records with message ids (S3's own
            notification format, an EventBridge event invoked directly, anything else); `received`
            names what it looks like.
    """
    try:
        SqsBatch.model_validate(event)
    except ValidationError:
        raise InvalidEventError(
            f"start_data_prep expects {EXPECTED_EVENT}",
            received=look_alike(event) or "an event of another shape",
        ) from None


class ArrivalBatch:
    """Handles one SQS batch of `Object Created` events for the data bucket."""

    def __init__(
        self, *, settings: Settings, service: DataPrepService, quarantine: EmptyUploadQuarantine, ledger: Ledger
    ) -> None:
        self._settings = settings
        self._service = service
        self._quarantine = quarantine
        self._ledger = ledger

    def handle(self, event: dict[str, Any], context: LambdaContext | None) -> PartialBatchResponse:
        """Process the batch; returns the partial batch response (failed message ids).

        Raises:
            InvalidEventError: the invocation is not an SQS batch (see `require_sqs_batch`).
        """
        try:
            require_sqs_batch(event)
        except InvalidEventError as exc:
            logger.error("invocation refused", error=exc.as_dict())
            metrics.add_metric(name="InvocationsRefused", unit=MetricUnit.Count, value=1)
            raise
        self._service.register_lambda_context(context)
        arrivals: dict[str, list[str]] = {}  # raw object identity → message ids carrying it
        objects: list[RawObject] = []
        empties: list[RawObject] = []

        def record_handler(record: SqsRecordModel) -> str:
            item = self._validate(record)
            if isinstance(item, Skipped):  # a folder marker: ignored on purpose (see `Skipped`)
                logger.info("raw object skipped", reason=item.reason, dataset=item.dataset, message_id=record.messageId)
                metrics.add_metric(name="ObjectsSkipped", unit=MetricUnit.Count, value=1)
                return item.reason
            if item.identity not in arrivals:
                (empties if item.is_empty else objects).append(item)
            arrivals.setdefault(item.identity, []).append(record.messageId)
            return "accepted"

        response = process_partial_batch(event.get("Records", []), record_handler)
        quarantined = self._quarantine.quarantine(empties) if empties else []
        outcomes = self._service.prepare(objects) if objects else []
        failed_ids = self._report_quarantined(quarantined, arrivals) + self._report(outcomes, arrivals)
        response["batchItemFailures"].extend({"itemIdentifier": message_id} for message_id in failed_ids)
        logger.info(
            "batch handled",
            records=len(event.get("Records", [])),
            objects=len(objects),
            quarantined=sum(q.result == "quarantined" for q in quarantined),
            runs_started=sum(o.result == "started" for o in outcomes),
            failures=len(response["batchItemFailures"]),
        )
        return response

    def _validate(self, record: SqsRecordModel) -> RawObject | Skipped:
        try:
            parsed = ObjectCreatedEvent.model_validate_json(cast(str, record.body))
            return raw_object_from_event(
                parsed,
                data_bucket=self._settings.data_bucket,
                raw_prefix=self._settings.raw_prefix,
                lines=self._settings.model_lines,
            )
        except ValidationError as exc:
            for model, reason in _RECORD_LOOK_ALIKES:
                try:
                    model.model_validate_json(cast(str, record.body))
                except ValidationError:
                    continue
                self._reject(record, reason, {"expected": EXPECTED_EVENT, "fix": _RECORD_FIX})
                raise InvalidEventError(reason, message_id=record.messageId) from None
            self._reject(record, "malformed event", {"problems": validation_summary(exc)})
            raise InvalidEventError("malformed Object Created event", message_id=record.messageId) from None
        except ClosedloopError as exc:
            self._reject(record, exc.message, exc.as_dict())
            raise

    def _reject(self, record: SqsRecordModel, reason: str, details: dict[str, Any]) -> None:
        logger.warning("record rejected", message_id=record.messageId, reason=reason, details=details)
        metrics.add_metric(name="RecordsRejected", unit=MetricUnit.Count, value=1)
        self._ledger.record(
            Decision(
                route=ROUTE,
                event_id=record.messageId,
                business_key=f"sqs:{record.messageId}",
                action="validate_event",
                result="rejected",
                reason=reason,
                details=details,
            )
        )

    def _report_quarantined(self, outcomes: list[QuarantineOutcome], arrivals: dict[str, list[str]]) -> list[str]:
        failed: list[str] = []
        for outcome in outcomes:
            if outcome.result == "quarantined":
                metrics.add_metric(name="EmptyFilesQuarantined", unit=MetricUnit.Count, value=1)
                logger.warning("empty file quarantined", quarantine=outcome.location)
            else:
                logger.error("empty file not quarantined", error=outcome.error)
                failed.extend(arrivals.get(outcome.identity, []))
        return failed

    def _report(self, outcomes: list[RunOutcome], arrivals: dict[str, list[str]]) -> list[str]:
        failed: list[str] = []
        for outcome in outcomes:
            if outcome.result == "started" and outcome.run is not None:
                metrics.add_metric(name="DataPrepRunsStarted", unit=MetricUnit.Count, value=1)
                logger.info(
                    "data preparation started",
                    dataset=outcome.dataset,
                    run_id=outcome.run.run_id,
                    job=outcome.run.job_name,
                    objects=outcome.run.objects,
                    found_existing=outcome.run.found_existing,
                )
            elif outcome.result == "duplicate":
                metrics.add_metric(name="DuplicateObjectsDropped", unit=MetricUnit.Count, value=len(outcome.identities))
                logger.info("batch already prepared", dataset=outcome.dataset, objects=len(outcome.identities))
            else:
                logger.error("data preparation not started", dataset=outcome.dataset, error=outcome.error)
                metrics.add_metric(name="DataPrepStartFailures", unit=MetricUnit.Count, value=1)
                for identity in outcome.identities:
                    failed.extend(arrivals.get(identity, []))
        return failed
