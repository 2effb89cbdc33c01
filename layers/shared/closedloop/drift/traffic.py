"""Adapter over S3 for the drift monitor: the endpoint's captured traffic.

SageMaker writes capture files under `<capture root><variant>/yyyy/mm/dd/hh/mm-ss-mmm-<uuid>.jsonl`,
so keys sort by time within a variant. A file is counted into a sketch of its own, streamed chunk
by chunk: never more than one file's counts are held beyond the run's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ConfigDict

from closedloop.aws import aws_errors, is_not_found
from closedloop.drift.capture import CHUNK_SIZE, CaptureFileSkipped, CaptureReadInterrupted, read_capture
from closedloop.drift.live import LiveModel
from closedloop.drift.reasons import short
from closedloop.drift.sample import RowSample
from closedloop.drift.sketch import CaptureSketch, DriftPlan
from closedloop.errors import ClosedloopError
from closedloop.model import Model

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_KEY_TIME = re.compile(r"/(\d{4})/(\d{2})/(\d{2})/(\d{2})/(\d{2})-(\d{2})-(\d{3})-[^/]*$")


def key_time(key: str) -> datetime | None:
    """When a capture file was started, from its key (`…/yyyy/mm/dd/hh/mm-ss-mmm-<uuid>.jsonl`)."""
    match = _KEY_TIME.search(key)
    if match is None:
        return None
    year, month, day, hour, minute, second, milli = (int(g) for g in match.groups())
    try:
        return datetime(year, month, day, hour, minute, second, milli * 1000, tzinfo=UTC)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class CaptureFile:
    """One capture object as ListObjectsV2 lists it."""

    key: str
    last_modified: datetime
    etag: str  # without its quotes; "" when not listed
    size: int | None

    @property
    def started_at(self) -> datetime:
        """When the file was started: its key's time, else when it was last written."""
        return key_time(self.key) or self.last_modified


class SkippedFile(Model):
    """A capture file that cannot be used, for good: its reason code and where and why."""

    model_config = ConfigDict(frozen=True)

    key: str
    reason: str
    detail: str


class CapturedTraffic:
    """Lists and reads the capture files of the live model's endpoint."""

    def __init__(self, s3: S3Client) -> None:
        self._s3 = s3

    def variants(self, live: LiveModel) -> list[str]:
        """The production variants that have captured traffic, sorted.

        Raises:
            AwsServiceError / ThrottledError: the bucket could not be listed.
        """
        paginator = self._s3.get_paginator("list_objects_v2")
        variants: list[str] = []
        with aws_errors("s3:ListObjectsV2(variants)"):
            for page in paginator.paginate(Bucket=live.capture_bucket, Prefix=live.capture_root, Delimiter="/"):
                variants.extend(
                    p["Prefix"][len(live.capture_root) :].rstrip("/") for p in page.get("CommonPrefixes", [])
                )
        return sorted(v for v in variants if v)

    def files(self, live: LiveModel, variant: str, start_after: str) -> Iterator[CaptureFile]:
        """A variant's capture files in key order, after `start_after` ("" for all), page by page.

        Raises:
            AwsServiceError / ThrottledError: the bucket could not be listed.
        """
        paginator = self._s3.get_paginator("list_objects_v2")
        prefix = f"{live.capture_root}{variant}/"
        arguments: dict[str, Any] = {"Bucket": live.capture_bucket, "Prefix": prefix}
        if start_after:
            arguments["StartAfter"] = start_after
        with aws_errors("s3:ListObjectsV2(capture)"):
            for page in paginator.paginate(**arguments):
                for obj in page.get("Contents", []):
                    if not obj["Key"].endswith("/"):
                        yield CaptureFile(
                            key=obj["Key"],
                            last_modified=obj["LastModified"],
                            etag=str(obj.get("ETag", "")).strip('"'),
                            size=obj.get("Size"),
                        )

    def count(
        self, live: LiveModel, file: CaptureFile, plan: DriftPlan, sample: RowSample | None = None
    ) -> CaptureSketch | SkippedFile | str:
        """Count one capture file into its own sketch (and offer its rows to `sample`, the file's own).

        Returns:
            the file's sketch; why it was skipped for good (deleted, empty, truncated, unusable);
            or, as text, why it was not read to the end (an AWS error, a connection that dropped):
            that file is unread data.
        """
        try:
            with aws_errors("s3:GetObject(capture)", passthrough=is_not_found):
                response = self._s3.get_object(Bucket=live.capture_bucket, Key=file.key)
        except ClientError:
            return SkippedFile(key=file.key, reason="gone", detail="deleted before it was read")
        except ClosedloopError as exc:
            return exc.message
        body = response["Body"]
        sketch = plan.new_sketch()
        try:
            for request in read_capture(body.iter_chunks(CHUNK_SIZE), expected_bytes=response.get("ContentLength")):
                sketch.add_request(request.inputs, request.outputs)
                if sample is not None:
                    sample.offer_request(request.inputs)
        except CaptureFileSkipped as exc:
            return SkippedFile(key=file.key, reason=exc.reason, detail=exc.detail)
        except (CaptureReadInterrupted, BotoCoreError) as exc:
            return short(exc)
        finally:
            body.close()
        return sketch
