"""`aws.sagemaker` endpoint events (route 5): `SageMaker Endpoint State Change` and
`SageMaker Endpoint Deployment State Change`.

What AWS really sends, and what these models accept because of it:
* statuses are upper case with underscores (`IN_SERVICE`, `UPDATE_ROLLBACK_FAILED`), where
  DescribeEndpoint says `InService`; `api_status()` maps one to the other;
* the envelope's `time` can be an epoch-millisecond *string* and `CreationTime` a float of epoch
  milliseconds; counts and weights are floats (`DesiredInstanceCount: 1.0`);
* `EndpointName` keeps the case it was created with while the ARN is lower case;
* a deployment event carries the blue/green progress in `PendingDeploymentSummary`
  (variant statuses `Creating`, `Updating`, `ActivatingTraffic`, `Baking`, `Deleting`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, TypeAdapter

from closedloop.events.base import EventBridgeModel, SageMakerSource
from closedloop.model import Model

EventEndpointStatus = Literal[
    "OUT_OF_SERVICE",
    "CREATING",
    "UPDATING",
    "SYSTEM_UPDATING",
    "ROLLING_BACK",
    "IN_SERVICE",
    "DELETING",
    "FAILED",
    "UPDATE_ROLLBACK_FAILED",
]


def _event_spelling(value: Any) -> Any:
    """Accept `InService` as well as `IN_SERVICE`: the same status, two spellings."""
    if isinstance(value, str) and value and "_" not in value and not value.isupper():
        return "".join(f"_{c}" if c.isupper() and i else c for i, c in enumerate(value)).upper()
    return value


def api_status(status: str) -> str:
    """`IN_SERVICE` → `InService`, the spelling DescribeEndpoint uses."""
    return "".join(part.capitalize() for part in status.lower().split("_"))


class VariantStatus(Model):
    status: str = Field(alias="Status")
    message: str = Field(default="", alias="StatusMessage")
    started_at: datetime | None = Field(default=None, alias="StartTime")


class EventVariant(Model):
    model_config = ConfigDict(populate_by_name=True)

    name: str | None = Field(default=None, alias="VariantName")
    current_weight: float | None = Field(default=None, alias="CurrentWeight")
    desired_weight: float | None = Field(default=None, alias="DesiredWeight")
    current_instance_count: float | None = Field(default=None, alias="CurrentInstanceCount")
    desired_instance_count: float | None = Field(default=None, alias="DesiredInstanceCount")
    statuses: list[VariantStatus] = Field(default_factory=list, alias="VariantStatus")


class PendingDeployment(Model):
    model_config = ConfigDict(populate_by_name=True)

    endpoint_config: str = Field(alias="EndpointConfigName", min_length=1)
    started_at: datetime | None = Field(default=None, alias="StartTime")
    variants: list[EventVariant] = Field(default_factory=list, alias="ProductionVariants")


class EndpointStateDetail(Model):
    model_config = ConfigDict(populate_by_name=True)

    endpoint_name: str = Field(alias="EndpointName", min_length=1, max_length=63)
    endpoint_arn: str = Field(alias="EndpointArn", pattern=r"^arn:aws[a-z-]*:sagemaker:[^:]*:[^:]*:endpoint/.+")
    endpoint_config: str | None = Field(default=None, alias="EndpointConfigName")
    status: Annotated[EventEndpointStatus, BeforeValidator(_event_spelling)] = Field(alias="EndpointStatus")
    variants: list[EventVariant] = Field(default_factory=list, alias="ProductionVariants")
    failure_reason: str | None = Field(default=None, alias="FailureReason")
    created_at: datetime | None = Field(default=None, alias="CreationTime")
    last_modified_at: datetime | None = Field(default=None, alias="LastModifiedTime")


class EndpointDeploymentDetail(EndpointStateDetail):
    pending: PendingDeployment | None = Field(default=None, alias="PendingDeploymentSummary")


class EndpointStateChangeEvent(EventBridgeModel):
    source: SageMakerSource  # type: ignore[assignment]
    detail_type: Literal["SageMaker Endpoint State Change"] = Field(alias="detail-type")
    detail: EndpointStateDetail


class EndpointDeploymentStateChangeEvent(EventBridgeModel):
    source: SageMakerSource  # type: ignore[assignment]
    detail_type: Literal["SageMaker Endpoint Deployment State Change"] = Field(alias="detail-type")
    detail: EndpointDeploymentDetail


EndpointEvent = Annotated[
    EndpointStateChangeEvent | EndpointDeploymentStateChangeEvent, Field(discriminator="detail_type")
]
"""Either endpoint event, told apart by its `detail-type` (the parser's discriminator)."""

ENDPOINT_EVENT: TypeAdapter[EndpointStateChangeEvent | EndpointDeploymentStateChangeEvent] = TypeAdapter(
    EndpointEvent, config=ConfigDict(defer_build=True)
)
"""The parser of either endpoint event; built on the first parse (defer_build), like the models."""
