"""The SQS record envelope of the two routes behind a queue (data arrival, model approvals).

Mirrors Powertools' `SqsRecordModel` field for field, like `closedloop.events.base` mirrors its
`EventBridgeModel`; apart from it so that the routes fed by EventBridge directly do not define
SQS models at cold start.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

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
