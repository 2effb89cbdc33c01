"""The SQS record envelope of the two routes behind a queue (data arrival, model approvals), and
their partial batch response.

Mirrors Powertools' `SqsRecordModel` field for field, like `closedloop.events.base` mirrors its
`EventBridgeModel`; apart from it so that the routes fed by EventBridge directly do not define
SQS models at cold start. `process_partial_batch` does what Powertools' `BatchProcessor` does for a
standard queue (parse each record, hand it over, report the ones that failed) without importing
its batch package, which loads asyncio and every Powertools data class at cold start (~25 ms).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Literal, TypedDict

from pydantic import Field

from closedloop.model import Model


class SqsAttributesModel(Model):
    ApproximateReceiveCount: str
    ApproximateFirstReceiveTimestamp: datetime
    MessageDeduplicationId: str | None = None
    MessageGroupId: str | None = None
    SenderId: str
    SentTimestamp: datetime
    SequenceNumber: str | None = None
    AWSTraceHeader: str | None = None
    DeadLetterQueueSourceArn: str | None = None


class SqsMsgAttributeModel(Model):
    stringValue: str | None = None
    binaryValue: str | None = None
    stringListValues: list[str] = Field(default_factory=list)
    binaryListValues: list[str] = Field(default_factory=list)
    dataType: str


class SqsRecordModel(Model):
    """One record of an SQS event-source batch (as Powertools models it)."""

    messageId: str
    receiptHandle: str
    body: Any
    attributes: SqsAttributesModel
    messageAttributes: dict[str, SqsMsgAttributeModel]
    md5OfBody: str
    md5OfMessageAttributes: str | None = None
    eventSource: Literal["aws:sqs"]
    eventSourceARN: str
    awsRegion: str


class PartialBatchResponse(TypedDict):
    """What a function behind an SQS queue with `ReportBatchItemFailures` returns."""

    batchItemFailures: list[dict[str, str]]


def process_partial_batch(records: Iterable[Any], handler: Callable[[SqsRecordModel], object]) -> PartialBatchResponse:
    """Parse every record and hand it to `handler`; a record that does not parse, or whose handler
    raised, is reported by its message id, so SQS delivers it again (and, after its last receive,
    to the queue's dead-letter queue). The handlers log and record their own failures."""
    failures: list[dict[str, str]] = []
    for raw in records:
        try:
            handler(SqsRecordModel.model_validate(raw))
        except Exception:  # every failure of one record is that record's, as Powertools has it
            message_id = raw.get("messageId") if isinstance(raw, dict) else None
            failures.append({"itemIdentifier": str(message_id or "")})
    return {"batchItemFailures": failures}
