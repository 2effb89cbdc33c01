"""S3 → EventBridge notifications in the format AWS sends (moto 5.2.x gets several fields wrong).

AWS (see events/s3_object_created.json and the S3 user guide's EventBridge event examples):
* every event has its own `id`; moto reuses one fixed id for all of them;
* `detail.object.etag` is lower-case `etag`; moto writes `eTag`;
* `version-id` is present only for versioned buckets; moto writes `null` otherwise;
* `sequencer` increases per key; moto sends a constant;
* `reason` is the API that caused it (`PutObject`, `POST Object`, `CopyObject`,
  `CompleteMultipartUpload`, `DeleteObject`, `Lifecycle Expiration`); moto sends `ObjectCreated`;
* `key` is URL-encoded as S3 encodes keys in its events (space → `+`, other reserved and non-ASCII
  bytes → `%XX` of UTF-8, `/` kept: "Event message structure", Amazon S3 User Guide,
  https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html; see
  docs/architecture.md, "Object keys in S3 events"); moto sends the key as stored.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus

from moto.s3 import notifications

_REASONS = {
    "s3:ObjectCreated:Put": "PutObject",
    "s3:ObjectCreated:Post": "POST Object",
    "s3:ObjectCreated:Copy": "CopyObject",
    "s3:ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
    "s3:ObjectRemoved:Delete": "DeleteObject",
    "s3:ObjectRemoved:DeleteMarkerCreated": "DeleteObject",
    "s3:LifecycleExpiration:Delete": "Lifecycle Expiration",
    "s3:ObjectRestore:Completed": "Restore Completed",
}
_sequence = itertools.count(0x0067470000000000)
_sequence_lock = threading.Lock()


def _sequencer() -> str:
    with _sequence_lock:
        return f"{next(_sequence):018X}"


def encode_object_key(key: str) -> str:
    """A key as S3 writes it into an event: form-encoded UTF-8, `/` left as is."""
    return quote_plus(key, safe="/")


def build_event(
    account_id: str,
    region: str,
    bucket_name: str,
    bucket_arn: str,
    event_name: str,
    key_name: str,
    size: int,
    etag: str,
    version_id: str | None,
) -> dict[str, Any]:
    """One S3 EventBridge event exactly as AWS shapes it."""
    detail_type = notifications._detail_type(event_name)  # type: ignore[arg-type]
    obj: dict[str, Any] = {"key": encode_object_key(key_name)}
    if detail_type == "Object Created":
        obj["size"] = size
        obj["etag"] = etag.replace('"', "")
    if version_id and version_id != "null":
        obj["version-id"] = version_id
    obj["sequencer"] = _sequencer()
    detail: dict[str, Any] = {
        "version": "0",
        "bucket": {"name": bucket_name},
        "object": obj,
        "request-id": uuid.uuid4().hex[:16].upper(),
        "requester": account_id,
        "source-ip-address": "127.0.0.1",
        "reason": _REASONS.get(event_name, event_name.rsplit(":", maxsplit=1)[-1]),
    }
    if detail_type == "Object Deleted":
        detail["deletion-type"] = "Delete Marker Created" if version_id else "Permanently Deleted"
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": "aws.s3",
        "account": account_id,
        # moto's EventBridge turns a unix time into AWS's ISO-8601 string when it delivers
        "time": datetime.now(UTC).timestamp(),
        "region": region,
        "resources": [bucket_arn],
        "detail": detail,
    }


def _send_event_bridge_message(account_id: str, bucket: Any, event_name: str, key: Any) -> None:
    from moto.events.models import events_backends

    event = build_event(
        account_id,
        bucket.region_name,
        bucket.name,
        bucket.arn,
        getattr(event_name, "value", event_name),
        key.name,
        int(key.size or 0),
        str(key.etag or ""),
        getattr(key, "version_id", None) if bucket.is_versioned else None,
    )
    backend = events_backends[account_id][bucket.region_name]
    for event_bus in backend.event_buses.values():
        for rule in event_bus.rules.values():
            rule.send_to_targets(event, transform_input=False)


def install() -> None:
    notifications._send_event_bridge_message = _send_event_bridge_message
