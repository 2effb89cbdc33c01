"""From `Object Created` events to preparation runs: validate keys, dedupe, group by dataset.

Pure functions: no I/O. `DataPrepService` (in `service.py`) does the side effects.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable
from typing import Literal

from pydantic import ConfigDict, Field, computed_field

from closedloop.dataprep.policy import DATASET_NAME, load_policy
from closedloop.errors import InvalidEventError, UnknownDatasetError
from closedloop.events.s3 import ObjectCreatedEvent
from closedloop.model import Model

MAX_KEY_BYTES = 1024  # S3's own limit: anything longer did not come from S3
MAX_VERSION_BYTES = 1024  # version ids (S3's limit), etags and sequencers are short opaque strings
MAX_IDENTITY_BYTES = 2000  # the identity is part of a ledger key (DynamoDB keys: 2048 bytes)
SUPPORTED_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
# What an event says about an object of a bucket without versioning: EventBridge omits `version-id`;
# S3's classic notifications and its APIs write the literal "null".
UNVERSIONED = (None, "null")


class RawObject(Model):
    """One raw file version that arrived under `raw/<dataset>/`."""

    model_config = ConfigDict(frozen=True)

    bucket: str
    key: str
    dataset: str
    format: Literal["csv", "jsonl"]
    size: int
    etag: str
    version_id: str | None = None
    sequencer: str | None = None
    event_id: str = ""

    @property
    def is_empty(self) -> bool:
        """A 0-byte file: nothing to prepare, quarantined with a report instead."""
        return self.size == 0

    @property
    def identity(self) -> str:
        """The dedupe key: bucket + key + version id (etag + sequencer when unversioned)."""
        version = self.version_id or f"etag:{self.etag}:{self.sequencer or ''}"
        return f"{self.bucket}/{self.key}#{version}"


class Skipped(Model):
    """An event that is valid and carries nothing at all: a folder marker (a 0-byte object whose
    key ends in `/`, what the S3 console's "Create folder" writes). Ignored on purpose — logged
    and counted (`ObjectsSkipped`), no ledger decision: there is no data and nothing to decide.
    An empty *file* is not skipped: it is a `RawObject` of size 0, quarantined (see `batch.py`).
    """

    model_config = ConfigDict(frozen=True)

    reason: Literal["folder_marker"]
    dataset: str | None = None


class DataPrepRun(Model):
    """One preparation run: the new raw objects of one dataset from one batch."""

    model_config = ConfigDict(frozen=True)

    dataset: str
    objects: tuple[RawObject, ...] = Field(min_length=1)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def run_id(self) -> str:
        """Deterministic from the batch content: a redelivered batch maps to the same run."""
        digest = hashlib.sha256(self.dataset.encode())
        for identity in sorted(obj.identity for obj in self.objects):
            digest.update(b"\x00" + identity.encode())
        return digest.hexdigest()[:16]

    @property
    def identities(self) -> list[str]:
        return [obj.identity for obj in self.objects]


def raw_object_from_event(
    event: ObjectCreatedEvent, *, data_bucket: str, raw_prefix: str, lines: tuple[str, ...] = ()
) -> RawObject | Skipped:
    """Validate one `Object Created` event of the data bucket.

    The key is URL-decoded first (S3 encodes it in its events; see `decode_object_key`), so every
    check, the manifest, the ledger and lineage see the key the object really has.

    Returns:
        The raw object (of size 0 for an empty file, which is quarantined, not prepared), or
        `Skipped` for a folder marker.

    Raises:
        InvalidEventError: another bucket, an object without a version id (the data bucket must be
            versioned), a key outside `raw/<dataset>/`, a key with `..` or control characters, an
            over-long key, version id, etag or sequencer, a key ending in `/` that holds data, an
            unsupported file type.
        UnknownDatasetError: no model line is declared for the key's dataset, or (`lines`, the
            stack's deployed lines, when given) the line is not deployed in this stack.
    """
    detail = event.detail
    key = detail.object.decoded_key
    if detail.bucket.name != data_bucket:
        raise InvalidEventError("event is for another bucket", bucket=detail.bucket.name)
    if detail.object.version_id in UNVERSIONED:
        raise InvalidEventError(
            "object has no version id: the data bucket is not versioned, so no run could name the exact input",
            fix="enable versioning on the data bucket (VersioningConfiguration Status: Enabled), then upload again",
        )
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidEventError("object key is longer than S3 allows", key_bytes=len(key.encode("utf-8")))
    if any(unicodedata.category(ch) in {"Cc", "Cf", "Cs"} for ch in key):
        raise InvalidEventError("object key holds control or format characters")
    if not key.startswith(raw_prefix):
        raise InvalidEventError(f"object key is outside {raw_prefix}", prefix=raw_prefix)
    relative = key[len(raw_prefix) :]
    dataset, _, rest = relative.partition("/")
    if key.endswith("/"):
        if detail.object.size:
            raise InvalidEventError("object key ends with '/' but the object holds data", bytes=detail.object.size)
        return Skipped(reason="folder_marker", dataset=dataset if DATASET_NAME.match(dataset) else None)
    if not DATASET_NAME.match(dataset):
        raise InvalidEventError(f"object key is not {raw_prefix}<dataset>/<file> with a lower-case dataset slug")
    if not rest:
        raise InvalidEventError(f"object key is not {raw_prefix}<dataset>/<file>")
    if any(segment in {"", ".", ".."} for segment in rest.split("/")):
        raise InvalidEventError("object key has '.', '..' or empty path segments")
    if lines and dataset not in lines:
        raise UnknownDatasetError(f"no model line {dataset!r} is deployed in this stack (ModelLines)", dataset=dataset)
    policy = load_policy(dataset)
    file_format = _format_of(rest)
    if file_format is None or file_format not in policy.formats:
        raise InvalidEventError(
            f"unsupported file type for dataset {dataset}: {rest.rsplit('/', 1)[-1]}",
            key=key,
            dataset=dataset,
            supported=sorted(s for s, f in SUPPORTED_SUFFIXES.items() if f in policy.formats),
        )
    return _recordable(
        RawObject(
            bucket=detail.bucket.name,
            key=key,
            dataset=dataset,
            format=file_format,
            size=detail.object.size,
            etag=detail.object.etag,
            version_id=detail.object.version_id,
            sequencer=detail.object.sequencer,
            event_id=event.id,
        )
    )


def _recordable(raw: RawObject) -> RawObject:
    """The object, if its identity fits the ledger's key: else the run it starts could never be
    recorded as having taken it (and every redelivery would start the preparation again).

    Raises:
        InvalidEventError: a version id, etag or sequencer longer than S3 writes, or an identity
            longer than a ledger key.
    """
    for name, value in (("version-id", raw.version_id), ("etag", raw.etag), ("sequencer", raw.sequencer)):
        if value is not None and len(value.encode("utf-8")) > MAX_VERSION_BYTES:
            raise InvalidEventError(f"object {name} is longer than S3 writes", field=name)
    if len(raw.identity.encode("utf-8")) > MAX_IDENTITY_BYTES:
        raise InvalidEventError("object key and version id together are longer than the ledger can record")
    return raw


def _format_of(name: str) -> Literal["csv", "jsonl"] | None:
    lowered = name.lower()
    for suffix, file_format in SUPPORTED_SUFFIXES.items():
        if lowered.endswith(suffix):
            return "csv" if file_format == "csv" else "jsonl"
    return None


def plan_runs(objects: Iterable[RawObject]) -> list[DataPrepRun]:
    """Dedupe objects by identity and group them into one run per dataset (sorted by dataset)."""
    unique: dict[str, RawObject] = {}
    for obj in objects:
        unique.setdefault(obj.identity, obj)
    by_dataset: dict[str, list[RawObject]] = {}
    for obj in unique.values():
        by_dataset.setdefault(obj.dataset, []).append(obj)
    return [
        DataPrepRun(dataset=dataset, objects=tuple(sorted(objs, key=lambda o: o.identity)))
        for dataset, objs in sorted(by_dataset.items())
    ]
