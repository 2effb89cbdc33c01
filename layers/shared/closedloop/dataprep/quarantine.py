"""Route 1's quarantine of empty uploads: a 0-byte raw file never reaches a preparation run.

An empty file has nothing to prepare, but it is a file someone uploaded on purpose or by mistake,
so it must end where an operator sees it — as every other rejected file does: in the quarantine
bucket next to a `.report.json` (counts and reasons, never a value), with a ledger decision
`quarantine_raw_object` / `quarantined` that `closedloop audit` shows. Starting a whole preparation
job only to quarantine it there would cost a job per empty file; the function does it itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ConfigDict

from closedloop.aws import aws_errors
from closedloop.dataprep.arrival import RawObject
from closedloop.dataprep.service import ROUTE
from closedloop.errors import ClosedloopError
from closedloop.ledger import Decision, Ledger
from closedloop.model import Model

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

EMPTY_FILE = "empty file"


class QuarantineOutcome(Model):
    """What happened to one empty upload."""

    model_config = ConfigDict(frozen=True)

    identity: str
    result: Literal["quarantined", "failed"]
    location: str | None = None
    error: dict[str, object] | None = None
    retryable: bool = False


def quarantine_prefix(obj: RawObject) -> str:
    """`<dataset>/arrival/<hash of the object version>/`: one place per object version, so a
    redelivered event writes the same objects again instead of new ones."""
    return f"{obj.dataset}/arrival/{hashlib.sha256(obj.identity.encode()).hexdigest()[:16]}/"


def build_empty_file_report(obj: RawObject, *, at: datetime) -> dict[str, Any]:
    """The `.report.json` of a quarantined empty file: the preparation script's report, one shape for all."""
    from closedloop.prep.prepare import quarantine_report  # noqa: PLC0415 - off the cold start: only empty files need it

    source = {"bucket": obj.bucket, "key": obj.key, "version_id": obj.version_id, "etag": obj.etag, "size": 0}
    return quarantine_report(source, EMPTY_FILE, {"bytes": 0, "stage": "arrival"}, at)


class EmptyUploadQuarantine:
    """Copies empty uploads to the quarantine bucket with a report and records the decision."""

    def __init__(self, *, quarantine_bucket: str, s3: S3Client, ledger: Ledger) -> None:
        self._bucket = quarantine_bucket
        self._s3 = s3
        self._ledger = ledger

    def quarantine(self, objects: Sequence[RawObject]) -> list[QuarantineOutcome]:
        """Quarantine each empty object; never raises per object (a failure says if a retry helps)."""
        outcomes = []
        for obj in objects:
            try:
                outcomes.append(self._quarantine(obj))
            except ClosedloopError as exc:
                outcomes.append(
                    QuarantineOutcome(
                        identity=obj.identity, result="failed", error=exc.as_dict(), retryable=exc.retryable
                    )
                )
        return outcomes

    def _quarantine(self, obj: RawObject) -> QuarantineOutcome:
        prefix = quarantine_prefix(obj)
        target = prefix + obj.key.rsplit("/", 1)[-1]
        report = build_empty_file_report(obj, at=datetime.now(UTC))
        # The object is 0 bytes by S3's own event: an empty body is an exact copy of it.
        with aws_errors("s3:PutObject(quarantine)"):
            self._s3.put_object(Bucket=self._bucket, Key=target, Body=b"")
            self._s3.put_object(
                Bucket=self._bucket,
                Key=target + ".report.json",
                Body=json.dumps(report, indent=1, sort_keys=True).encode(),
                ContentType="application/json",
            )
        location = f"s3://{self._bucket}/{prefix}"
        self._ledger.record(
            Decision(
                route=ROUTE,
                event_id=obj.event_id or obj.identity,
                business_key=f"quarantine:{prefix.rstrip('/')}",
                action="quarantine_raw_object",
                result="quarantined",
                reason=EMPTY_FILE,
                details={"dataset": obj.dataset, "bytes": 0, "quarantine": location},
            )
        )
        return QuarantineOutcome(identity=obj.identity, result="quarantined", location=location)
