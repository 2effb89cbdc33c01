"""The envelopes every closedloop event arrives in: EventBridge events and SQS records.

These mirror Powertools' `EventBridgeModel` and `SqsRecordModel` field for field (same names,
aliases and types), so route models subclass them exactly as they would subclass Powertools'. They
live here because importing `aws_lambda_powertools.utilities.parser.models` builds every one of its
~100 event models: measured at 110-150 ms of a handler's cold start on this machine, for models no
closedloop route uses (see docs/architecture.md, "Cold start").
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class EventBridgeModel(BaseModel):
    """An EventBridge event envelope (as Powertools models it)."""

    model_config = ConfigDict(populate_by_name=True)

    version: str
    id: str
    source: str
    account: str
    time: datetime
    region: str
    resources: list[str]
    detail_type: str = Field(alias="detail-type")
    detail: Any
    replay_name: str | None = Field(default=None, alias="replay-name")


class SqsAttributesModel(BaseModel):
    ApproximateReceiveCount: str
    ApproximateFirstReceiveTimestamp: datetime
    MessageDeduplicationId: str | None = None
    MessageGroupId: str | None = None
    SenderId: str
    SentTimestamp: datetime
    SequenceNumber: str | None = None
    AWSTraceHeader: str | None = None
    DeadLetterQueueSourceArn: str | None = None


class SqsMsgAttributeModel(BaseModel):
    stringValue: str | None = None
    binaryValue: str | None = None
    stringListValues: list[str] = Field(default_factory=list)
    binaryListValues: list[str] = Field(default_factory=list)
    dataType: str


class SqsRecordModel(BaseModel):
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
