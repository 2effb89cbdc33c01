"""`aws.s3` / `Object Created` through EventBridge, and the SQS record that carries it to route 1."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, Json

from closedloop.events.base import EventBridgeModel, SqsRecordModel


class S3Bucket(BaseModel):
    name: str = Field(min_length=3, max_length=63)


class S3Object(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    key: str = Field(min_length=1)
    size: int = Field(ge=0)
    etag: str = Field(min_length=1)
    version_id: str | None = Field(default=None, alias="version-id")
    sequencer: str | None = None


class ObjectCreatedDetail(BaseModel):
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
