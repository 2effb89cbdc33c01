"""Stages across accounts: a version's identity from stage to stage, and the stage-change events.

A version is trained and approved in one account (the build account, stage `dev` by default) and
served by stacks in other accounts (`staging`, `prod`; docs/multi-account.md). Each serving stage
keeps its own copy of the version in its own registry, so its approval, rollout and rollback are
its own; the copy names the version it came from (`lineage.SOURCE_PACKAGE`). The source version's
ARN — the build account's — is the version's identity in every stage and in every stage event.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from closedloop import lineage
from closedloop.aws import aws_errors
from closedloop.errors import AwsServiceError
from closedloop.events.stage import STAGE_DETAIL_TYPE, STAGE_SOURCE, StageChangeDetail

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient


def source_of(arn: str, version: int, metadata: Mapping[str, str]) -> tuple[str, int]:
    """(ARN, version) of the version a stage's version is a copy of — itself, when it was built here."""
    source = metadata.get(lineage.SOURCE_PACKAGE, "")
    if not source:
        return arn, version
    number = source.rsplit("/", 1)[-1]
    return source, int(number) if number.isdigit() else version


class StageEvents:
    """Puts this stack's stage changes on its account's default bus (rules carry them onwards)."""

    def __init__(self, client: EventBridgeClient) -> None:
        self._client = client

    def publish(self, detail: StageChangeDetail) -> None:
        """Put one stage change.

        Raises:
            AwsServiceError / ThrottledError: EventBridge did not take it (retryable).
        """
        entry = {
            "Source": STAGE_SOURCE,
            "DetailType": STAGE_DETAIL_TYPE,
            "Resources": sorted({detail.model_package_arn, detail.source_model_package_arn}),
            "Detail": json.dumps(detail.model_dump(mode="json"), sort_keys=True),
        }
        with aws_errors("events:PutEvents"):
            response = self._client.put_events(Entries=[entry])  # type: ignore[list-item]
        if response.get("FailedEntryCount"):
            failed = response["Entries"][0]
            raise AwsServiceError(
                f"events:PutEvents did not take the stage change: {failed.get('ErrorCode', '')}",
                retryable=True,
            )
