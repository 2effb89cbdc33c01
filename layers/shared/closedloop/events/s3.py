"""`aws.s3` / `Object Created` through EventBridge, and the SQS record that carries it to route 1.

Also the S3 formats route 1 does *not* take but may be handed by mistake (S3's own `Records[]`
notification, its `s3:TestEvent`), modelled only so a refusal can say what arrived instead.
"""

from __future__ import annotations

import json
from typing import Any, Literal
from urllib.parse import unquote_plus

from pydantic import BaseModel, ConfigDict, Field, Json, ValidationError, field_validator

from closedloop.events.base import EventBridgeModel
from closedloop.events.sqs import SqsRecordModel
from closedloop.model import Model


def decode_object_key(encoded: str) -> str:
    """The object key as S3 stores it, from the URL-encoded form S3 writes into its events.

    S3 URL-encodes object keys in the events it sends (`red flower.jpg` → `red+flower.jpg`, other
    reserved and non-ASCII bytes as `%XX` of UTF-8): "Event message structure", Amazon S3 User
    Guide, https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html.
    The EventBridge page (https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html)
    does not name an encoding; AWS's own consumers of the EventBridge form decode it the same way
    (Powertools for Python's `S3EventBridgeNotificationObject.key` applies `unquote_plus`). See
    docs/architecture.md, "Object keys in S3 events".

    Raises:
        ValueError: the `%XX` escapes do not decode to UTF-8.
    """
    try:
        return unquote_plus(encoded, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise ValueError("object key is not URL-encoded UTF-8") from None


class S3Bucket(Model):
    name: str = Field(min_length=3, max_length=63)


class S3Object(Model):
    model_config = ConfigDict(populate_by_name=True)

    key: str = Field(min_length=1)  # as S3 sends it: URL-encoded (see `decode_object_key`)
    size: int = Field(ge=0)
    etag: str = Field(min_length=1)
    version_id: str | None = Field(default=None, alias="version-id", min_length=1)
    sequencer: str | None = None

    @field_validator("key")
    @classmethod
    def _decodable(cls, key: str) -> str:
        decode_object_key(key)
        return key

    @property
    def decoded_key(self) -> str:
        """The key the object has in the bucket (what GetObject, the manifest and lineage use)."""
        return decode_object_key(self.key)


class ObjectCreatedDetail(Model):
    model_config = ConfigDict(populate_by_name=True)

    version: str
    bucket: S3Bucket
    object: S3Object
    request_id: str = Field(alias="request-id")
    requester: str
    source_ip_address: str | None = Field(default=None, alias="source-ip-address")
    reason: str


class ObjectCreatedEvent(EventBridgeModel):
    source: Literal["aws.s3"]
    detail_type: Literal["Object Created"] = Field(alias="detail-type")
    detail: ObjectCreatedDetail


class ObjectCreatedSqsRecord(SqsRecordModel):
    """What route 1's function receives per record: the EventBridge event as the SQS body."""

    body: Json[ObjectCreatedEvent]  # type: ignore[assignment]


class SqsMessageId(Model):
    messageId: str = Field(min_length=1)


class SqsBatch(Model):
    """The least of an SQS event-source batch: a `Records` list whose records each carry the message
    id a partial batch response names (the rest of each record is checked record by record). An
    empty list carries nothing to drop: it is handled, as nothing."""

    Records: list[SqsMessageId]


class ClassicS3Record(Model):
    eventSource: Literal["aws:s3"]
    eventName: str


class ClassicS3Notification(Model):
    """S3's own notification format (`Records[]`, sent to SQS, SNS or Lambda directly)."""

    Records: list[ClassicS3Record] = Field(min_length=1)


class S3TestEvent(Model):
    """What S3 sends once when a classic notification configuration is saved."""

    Service: Literal["Amazon S3"]
    Event: Literal["s3:TestEvent"]


_LOOK_ALIKES: tuple[tuple[type[BaseModel], str], ...] = (
    (ClassicS3Notification, "a classic S3 event notification (Records[] with eventSource aws:s3)"),
    (S3TestEvent, "an S3 test event (s3:TestEvent)"),
    (EventBridgeModel, "an EventBridge event"),
)


def look_alike(document: Any) -> str | None:
    """Which S3 or EventBridge format `document` (a dict, or JSON text) is, if it is a known one."""
    if isinstance(document, str | bytes):
        try:
            document = json.loads(document)
        except ValueError:
            return None
    for model, name in _LOOK_ALIKES:
        try:
            model.model_validate(document)
        except ValidationError:
            continue
        return name
    return None
