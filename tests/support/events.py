"""The project's canonical sample events (`events/`), loaded the way `sam local invoke -e` reads them."""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

EVENTS = Path(__file__).resolve().parents[2] / "events"
# The seven routes, by the name each records in the ledger.
ROUTES = frozenset(
    {
        "data-arrival",
        "data-prepared",
        "pipeline-finished",
        "model-approval",
        "deployment-outcome",
        "alarm",
        "drift-monitor",
    }
)


def load_event(name: str) -> dict[str, Any]:
    """A fresh copy of `events/<name>.json`."""
    return json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))


def object_created(
    bucket: str,
    key: str,
    *,
    size: int = 1024,
    version_id: str | None = "v1",
    etag: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """An `Object Created` event in AWS's format, shaped like `events/s3_object_created.json`.

    `key` is the object's real key; the event carries it URL-encoded, as S3 writes keys into its
    events (space → `+`, `%XX` of UTF-8 for the rest, `/` kept).
    """
    event = copy.deepcopy(load_event("s3_object_created"))
    event["id"] = event_id or str(uuid.uuid4())
    event["resources"] = [f"arn:aws:s3:::{bucket}"]
    detail = event["detail"]
    detail["bucket"]["name"] = bucket
    obj = detail["object"]
    obj["key"] = quote_plus(key, safe="/")
    obj["size"] = size
    obj["etag"] = etag or hashlib.md5(f"{key}:{version_id}".encode()).hexdigest()
    if version_id is None:
        obj.pop("version-id", None)
    else:
        obj["version-id"] = version_id
    return event


def sqs_batch(bodies: list[dict[str, Any] | str], *, queue_arn: str | None = None) -> dict[str, Any]:
    """An SQS event-source batch carrying `bodies`, shaped like `events/start_data_prep_sqs.json`."""
    template = load_event("start_data_prep_sqs")["Records"][0]
    records = []
    for body in bodies:
        text = body if isinstance(body, str) else json.dumps(body)
        record = copy.deepcopy(template)
        record["messageId"] = str(uuid.uuid4())
        record["body"] = text
        record["md5OfBody"] = hashlib.md5(text.encode()).hexdigest()
        if queue_arn:
            record["eventSourceARN"] = queue_arn
        records.append(record)
    return {"Records": records}
