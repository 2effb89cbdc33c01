"""What the rollout routes know: a model package version, the endpoint, the ledger's endpoint state."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from closedloop import lineage
from closedloop.model import Model

ApprovalStatus = Literal["Approved", "Rejected", "PendingManualApproval"]
DeploymentKind = Literal["deploy", "rollback"]
Outcome = Literal["live", "rolled_back", "failed"]

UNKNOWN = "unknown"


class ModelPackage(Model):
    """One model package version as DescribeModelPackage describes it (the fields the rollout uses)."""

    model_config = ConfigDict(frozen=True)

    arn: str
    group: str
    version: int
    approval_status: str
    package_status: str = ""
    approved_by: str = ""  # the identity that last set the status (LastModifiedBy, else CreatedBy)
    last_modified_at: datetime | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    generated_by: str = ""
    content_types: tuple[str, ...] = ()
    response_types: tuple[str, ...] = ()

    @classmethod
    def from_description(cls, described: Mapping[str, Any]) -> ModelPackage:
        """Build from a DescribeModelPackage response."""
        identity = (described.get("LastModifiedBy") or described.get("CreatedBy") or {}).get("IamIdentity") or {}
        spec = described.get("InferenceSpecification") or {}
        return cls(
            arn=described["ModelPackageArn"],
            group=described.get("ModelPackageGroupName", ""),
            version=int(described.get("ModelPackageVersion") or 0),
            approval_status=described.get("ModelApprovalStatus", ""),
            package_status=described.get("ModelPackageStatus", ""),
            approved_by=identity.get("Arn", ""),
            last_modified_at=described.get("LastModifiedTime") or described.get("CreationTime"),
            metadata=dict(described.get("CustomerMetadataProperties") or {}),
            generated_by=(described.get("MetadataProperties") or {}).get("GeneratedBy", ""),
            content_types=tuple(spec.get("SupportedContentTypes") or ()),
            response_types=tuple(spec.get("SupportedResponseMIMETypes") or ()),
        )

    @property
    def pipeline_execution(self) -> str:
        return self.metadata.get(lineage.PIPELINE_EXECUTION) or self.generated_by or UNKNOWN

    @property
    def prepared_manifest(self) -> str:
        return self.metadata.get(lineage.PREPARED_MANIFEST) or UNKNOWN

    @property
    def code_version(self) -> str:
        return self.metadata.get(lineage.CODE_VERSION) or UNKNOWN

    def missing_lineage(self) -> list[str]:
        """Lineage keys the pipeline should have written but did not."""
        wanted = (lineage.PIPELINE_EXECUTION, lineage.PREPARED_MANIFEST, lineage.CODE_VERSION)
        return [key for key in wanted if not self.metadata.get(key)]


class Endpoint(Model):
    """The endpoint as DescribeEndpoint says it is now."""

    model_config = ConfigDict(frozen=True)

    name: str
    arn: str
    status: str
    config_name: str
    failure_reason: str = ""
    pending_config_name: str = ""

    @classmethod
    def from_description(cls, described: Mapping[str, Any]) -> Endpoint:
        pending = described.get("PendingDeploymentSummary") or {}
        return cls(
            name=described["EndpointName"],
            arn=described["EndpointArn"],
            status=described["EndpointStatus"],
            config_name=described.get("EndpointConfigName", ""),
            failure_reason=described.get("FailureReason") or "",
            pending_config_name=pending.get("EndpointConfigName", ""),
        )

    def config_arn(self, config_name: str | None = None) -> str:
        """The ARN of an endpoint config in this endpoint's account and region (SageMaker writes it lower case)."""
        prefix = self.arn.rsplit(":endpoint/", 1)[0]
        return f"{prefix}:endpoint-config/{(config_name or self.config_name).lower()}"


class LiveVersion(Model):
    """The model package version an endpoint config serves (from its lineage tags)."""

    model_config = ConfigDict(frozen=True)

    model_package_arn: str
    version: int | None
    endpoint_config: str


class EndpointState(Model):
    """`ledger_keys.endpoint_state(endpoint)`: what serves, what is being rolled out, what happened last.

    The first six fields are the contract other routes read; the rest is the rollout's bookkeeping.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    live_model_package_arn: str = ""
    live_version: int | None = None
    endpoint_config: str = ""
    previous_model_package_arn: str = ""
    status: str = "none"
    updated_at: str = ""
    pending_model_package_arn: str = ""
    pending_version: int | None = None
    pending_endpoint_config: str = ""
    pending_kind: DeploymentKind | Literal[""] = ""
    pending_deployment_id: str = ""
    pending_since: str = ""
    last_outcome: str = ""
    last_reason: str = ""

    @property
    def has_pending(self) -> bool:
        return bool(self.pending_endpoint_config)


class RolloutOutcome(Model):
    """What route 4 decided for one model package state change (the idempotent result)."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    model_package_arn: str
    version: int
    status: str
    result: Literal["deploying", "already_live", "skipped", "refused", "recorded", "no_rollback_target"]
    action: Literal["create_endpoint", "update_endpoint", "none"] = "none"
    kind: DeploymentKind | Literal[""] = ""
    reason: str = ""
    deployed_model_package_arn: str = ""
    deployed_version: int | None = None
    endpoint_config: str = ""
    deployment_id: str = ""


class DeploymentObservation(Model):
    """What route 5 made of one endpoint event."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    endpoint_name: str
    event_status: str
    endpoint_status: str = ""
    result: Literal["live", "rolled_back", "failed", "in_progress", "unchanged", "reconciled", "deleted", "ignored"]
    model_package_arn: str = ""
    version: int | None = None
    endpoint_config: str = ""
    reason: str = ""
