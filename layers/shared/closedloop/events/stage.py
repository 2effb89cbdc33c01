"""`closedloop` / `Model Version Stage Change` (route 8): what happened to a model version in a stage.

Every stack puts one on its account's default bus when a version becomes live, is rolled back or
fails on its endpoint (route 5), and when route 8 promotes or refuses one. EventBridge rules carry
them across accounts (docs/multi-account.md): a stage's `live` to the next stage's account, where
route 8 promotes the version; every stage's changes to the account that trained the version, where
route 8 records them. A cross-account delivery keeps the envelope's `account` — the account the
event was put in — so that is what the receiving stack checks, never the detail's own claim.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from closedloop.events.base import EventBridgeModel
from closedloop.model import Model

STAGE_SOURCE = "closedloop"
STAGE_DETAIL_TYPE = "Model Version Stage Change"
StageChangeKind = Literal["promoted", "live", "rolled_back", "failed", "refused"]
PACKAGE_ARN_PATTERN = r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package/[^/]+/\d+$"


class StageChangeDetail(Model):
    """The change, the stage's own version and the version it is a copy of (the line's identity)."""

    model_config = ConfigDict(populate_by_name=True, frozen=True)

    line: str = Field(min_length=1, max_length=30)
    stage: str = Field(pattern=r"^[a-z][a-z0-9-]{0,15}$")
    change: StageChangeKind
    model_package_arn: str = Field(pattern=PACKAGE_ARN_PATTERN)
    source_model_package_arn: str = Field(pattern=PACKAGE_ARN_PATTERN)
    source_version: int = Field(ge=1)
    approval: str = ""  # `auto:<arn>` / `manual:<arn>`: who released the version in this stage
    status: str = ""  # the stage's registry status of its version (promoted: Approved or pending)
    reason: str = ""


class StageChangeEvent(EventBridgeModel):
    source: Literal["closedloop"]  # type: ignore[assignment]
    detail_type: Literal["Model Version Stage Change"] = Field(alias="detail-type")
    detail: StageChangeDetail
