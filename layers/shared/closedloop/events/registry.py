"""`aws.sagemaker` / `SageMaker Model Package State Change` (route 4), and the SQS record that carries it.

What AWS really sends, and what this model accepts because of it:
* `CreationTime` / `LastModifiedTime` are epoch milliseconds in captured events and ISO strings in
  the documentation's examples — both parse to an aware datetime;
* `ModelPackageVersion` is a JSON number;
* the documentation's examples repeat the `source` key (`"aws.sagemaker"`, then
  `["aws.sagemaker"]`), so a JSON parser that keeps the last key sees a one-element list: it is
  accepted as the single source it names;
* a new registration (`PendingManualApproval`) is not an approval decision: the rule never routes
  it here, and the model rejects it if it arrives anyway;
* an update of other fields of an approved version (its description, metadata, `ModelLifeCycle`)
  emits the same event with `UpdatedModelPackageFields` saying so (`status_changed` is False).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field, Json

from closedloop.events.base import EventBridgeModel, SageMakerSource
from closedloop.events.sqs import SqsRecordModel
from closedloop.model import Model

ApprovalDecision = Literal["Approved", "Rejected"]


class ModelPackageStateChangeDetail(Model):
    """The fields route 4 relies on; the rest of the package description is read from the registry."""

    model_config = ConfigDict(populate_by_name=True)

    group: str = Field(alias="ModelPackageGroupName", min_length=1, max_length=63)
    version: int = Field(alias="ModelPackageVersion", ge=1)
    arn: str = Field(alias="ModelPackageArn", pattern=r"^arn:aws[a-z-]*:sagemaker:[^:]*:[^:]*:model-package/.+")
    name: str | None = Field(default=None, alias="ModelPackageName")
    approval_status: ApprovalDecision = Field(alias="ModelApprovalStatus")
    package_status: str | None = Field(default=None, alias="ModelPackageStatus")
    created_at: datetime | None = Field(default=None, alias="CreationTime")
    last_modified_at: datetime | None = Field(default=None, alias="LastModifiedTime")
    # newer events list what the update changed (ModelApprovalStatus, ApprovalDescription,
    # CustomerMetadataProperties, ModelLifeCycle…); older ones do not say
    updated_fields: list[str] | None = Field(default=None, alias="UpdatedModelPackageFields")

    @property
    def status_changed(self) -> bool:
        """False only when the event says the update changed other fields, not the approval status."""
        return self.updated_fields is None or "ModelApprovalStatus" in self.updated_fields


class ModelPackageStateChangeEvent(EventBridgeModel):
    source: SageMakerSource  # type: ignore[assignment]
    detail_type: Literal["SageMaker Model Package State Change"] = Field(alias="detail-type")
    detail: ModelPackageStateChangeDetail


class ModelPackageStateChangeSqsRecord(SqsRecordModel):
    """What route 4's function receives per record: the EventBridge event as the SQS body."""

    body: Json[ModelPackageStateChangeEvent]  # type: ignore[assignment]
