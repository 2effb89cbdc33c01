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

from pydantic import BaseModel, ConfigDict, Field, ValidationError


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


def single_source(value: Any) -> Any:
    """A duplicated `source` key (last one kept) arrives as a one-element list: the source it names."""
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


def validation_problems(exc: ValidationError) -> list[dict[str, str]]:
    """Where and why a model rejected an event — without the values it held."""
    return [
        {"at": ".".join(map(str, err["loc"])) or "(root)", "problem": err["msg"]}
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ][:10]
