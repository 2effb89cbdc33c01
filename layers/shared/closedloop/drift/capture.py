"""Streaming reader of SageMaker data capture files (JSON Lines), one request per line.

A line is SageMaker's capture record::

    {"captureData": {"endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
                                       "data": "34,51000.0,...\\n", "encoding": "CSV"},
                     "endpointOutput": {"observedContentType": "text/csv; charset=utf-8",
                                        "mode": "OUTPUT", "data": "0.83", "encoding": "CSV"}},
     "eventMetadata": {"eventId": "...", "inferenceTime": "2026-11-27T09:00:01Z"},
     "eventVersion": "0"}

`data` is the payload as text (`CSV`) or base64 of it (`BASE64`). The reader takes the object's
body as byte chunks, so a file is never held in memory; it yields the decoded request and
response text of each line. A file it cannot use raises `CaptureFileSkipped` with a reason code —
`empty`, `truncated` (the last line is cut off), `malformed-record`, `unknown-encoding`,
`unsupported-content-type` — and a body that ends before the object's length raises
`CaptureReadInterrupted`: that data was not read and must be read again later.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

CHUNK_SIZE = 1 << 16
ENCODINGS = ("CSV", "BASE64")
CSV_CONTENT_TYPE = "text/csv"


class CaptureFileSkipped(Exception):
    """The file cannot be used, for good: `reason` is a stable code, `detail` says where and why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class CaptureReadInterrupted(Exception):
    """The body ended before the object did: the rest of the file was not read."""


@dataclass(frozen=True, slots=True)
class CapturedRequest:
    """One captured request: the CSV rows sent and the scores returned (None if not captured)."""

    inputs: str
    outputs: str | None


def _snippet(value: object) -> str:
    text = str(value)
    return text if len(text) <= 24 else text[:23] + "…"


def decode_payload(payload: Mapping[str, Any], line: int) -> str:
    """The text of one `endpointInput`/`endpointOutput` record.

    Raises:
        CaptureFileSkipped: unknown encoding, a content type other than CSV, or undecodable data.
    """
    data = payload.get("data")
    encoding = payload.get("encoding")
    content_type = payload.get("observedContentType")
    if encoding not in ENCODINGS:
        raise CaptureFileSkipped(
            "unknown-encoding", f"line {line}: encoding {_snippet(encoding)!r} is neither CSV nor BASE64"
        )
    if isinstance(content_type, str) and not content_type.lower().startswith(CSV_CONTENT_TYPE):
        raise CaptureFileSkipped(
            "unsupported-content-type", f"line {line}: content type {_snippet(content_type)!r} is not text/csv"
        )
    if not isinstance(data, str):
        raise CaptureFileSkipped("malformed-record", f"line {line}: data is not a string")
    if encoding == "CSV":
        return data
    try:
        return base64.b64decode(data, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise CaptureFileSkipped("malformed-record", f"line {line}: data is not base64 of UTF-8 text") from None


def parse_record(line: bytes, number: int) -> CapturedRequest:
    """Decode one capture line.

    Raises:
        CaptureFileSkipped: the line is not a capture record, or its payload cannot be decoded.
    """
    try:
        document = json.loads(line)
    except ValueError:  # includes UnicodeDecodeError
        raise CaptureFileSkipped("malformed-record", f"line {number} is not JSON") from None
    capture = document.get("captureData") if isinstance(document, dict) else None
    if not isinstance(capture, dict):
        raise CaptureFileSkipped("malformed-record", f"line {number} has no captureData")
    request = capture.get("endpointInput")
    if not isinstance(request, dict):
        raise CaptureFileSkipped("malformed-record", f"line {number} has no endpointInput")
    response = capture.get("endpointOutput")
    if response is not None and not isinstance(response, dict):
        raise CaptureFileSkipped("malformed-record", f"line {number}: endpointOutput is not an object")
    return CapturedRequest(
        inputs=decode_payload(request, number),
        outputs=decode_payload(response, number) if response is not None else None,
    )


def read_capture(chunks: Iterable[bytes], *, expected_bytes: int | None = None) -> Iterator[CapturedRequest]:
    """Yield the requests of one capture file, reading it chunk by chunk.

    Args:
        chunks: the object's body as byte chunks (e.g. `StreamingBody.iter_chunks()`).
        expected_bytes: the object's length; a body that ends short of it was interrupted.

    Raises:
        CaptureFileSkipped: the file is empty, truncated or holds a record that cannot be used.
            Raised as soon as it is found: a caller that must not use part of a bad file keeps
            what it yielded aside until the iteration ends.
        CaptureReadInterrupted: fewer bytes arrived than the object holds.
    """
    pending = b""
    read = 0
    number = 0
    records = 0
    for chunk in chunks:
        read += len(chunk)
        if b"\n" not in chunk:
            pending += chunk
            continue
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for line in lines:
            number += 1
            if line.strip():
                records += 1
                yield parse_record(line, number)
    if expected_bytes is not None and read < expected_bytes:
        raise CaptureReadInterrupted(f"read {read} of {expected_bytes} bytes")
    if pending.strip():
        number += 1
        try:
            last = parse_record(pending, number)
        except CaptureFileSkipped as exc:
            if exc.reason != "malformed-record":
                raise
            raise CaptureFileSkipped("truncated", f"line {number} ends before its record does") from None
        records += 1
        yield last
    if not records:
        raise CaptureFileSkipped("empty", f"{read} bytes and no record")
