"""Which preparation run a finished job was, and what it prepared (its `manifest.json`).

A preparation run is identified by its input manifest (`manifests/<dataset>/<run id>/input.json`,
written by route 1) — the Processing job carries it in its container arguments, the Glue run in
its arguments (`--manifest`, `--run-id`). The input manifest names the run's output prefix; the
prepared manifest there (`manifest.json`, written by `closedloop/prep/prepare.py`) says how many
rows were prepared, where the data is, which code prepared it and where its PII report is.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from pydantic import ConfigDict, ValidationError

from closedloop.aws import aws_errors, is_not_found
from closedloop.errors import InvalidEventError, MissingEvidenceError
from closedloop.model import Model
from closedloop.s3uri import split_s3_uri

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PREPARED_SCHEMA = "closedloop.prepared-manifest/1"
INPUT_SCHEMA = "closedloop.prep-input/1"
MAX_MANIFEST_BYTES = 5 * 1024 * 1024


class RunArguments(Model):
    """The run a job was started for, from its arguments."""

    model_config = ConfigDict(frozen=True)

    manifest_uri: str
    run_id: str


class PreparedData(Model):
    """What a preparation run produced (no data values: counts, locations, versions)."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    dataset: str
    prepared_manifest_uri: str
    data_uri: str | None
    rows: int
    prepared_files: int
    quarantined_files: int
    code_version: str
    pii_report_uri: str | None
    prepared_at: datetime | None
    # what the run did about undeclared PII (the dataset policy's choice) and what it found
    undeclared_pii_action: str = ""
    undeclared_pii_files: int = 0
    quarantined_rows: int = 0
    redacted_values: int = 0


def run_arguments(arguments: list[str] | dict[str, str]) -> RunArguments:
    """`--manifest` and `--run-id` from a job's arguments (a Processing argument list or Glue's map).

    Raises:
        InvalidEventError: either is missing — the job was not started by route 1.
    """
    if isinstance(arguments, dict):
        named = dict(arguments)
    else:
        named = {}
        for index, argument in enumerate(arguments):
            name, sep, value = argument.partition("=")
            if sep and name.startswith("--"):
                named[name] = value
            elif argument.startswith("--") and index + 1 < len(arguments):
                named[argument] = arguments[index + 1]
    manifest, run_id = named.get("--manifest"), named.get("--run-id")
    if not manifest or not run_id:
        raise InvalidEventError("the job's arguments name no preparation run (--manifest, --run-id)")
    return RunArguments(manifest_uri=manifest, run_id=run_id)


def read_json(s3: S3Client, uri: str, what: str) -> dict[str, Any]:
    """A JSON document from S3.

    Raises:
        MissingEvidenceError: the object does not exist, is too large or is not a JSON object.
        AwsServiceError / ThrottledError: S3 failed.
    """
    bucket, key = split_s3_uri(uri)
    try:
        with aws_errors(f"s3:GetObject({what})", passthrough=is_not_found):
            response = s3.get_object(Bucket=bucket, Key=key)
    except ClientError:
        raise MissingEvidenceError(f"the {what} does not exist", uri=uri) from None
    if int(response.get("ContentLength", 0) or 0) > MAX_MANIFEST_BYTES:
        raise MissingEvidenceError(f"the {what} is larger than {MAX_MANIFEST_BYTES} bytes", uri=uri)
    try:
        document = json.loads(response["Body"].read())
    except ValueError:
        raise MissingEvidenceError(f"the {what} is not JSON", uri=uri) from None
    if not isinstance(document, dict):
        raise MissingEvidenceError(f"the {what} is not a JSON object", uri=uri)
    return document


def read_prepared(s3: S3Client, args: RunArguments) -> PreparedData:
    """Follow a run's input manifest to its prepared manifest and summarise it.

    Raises:
        MissingEvidenceError: a manifest is missing, unreadable, of another schema or another run.
    """
    source = read_json(s3, args.manifest_uri, "input manifest")
    if source.get("schema") != INPUT_SCHEMA or source.get("run_id") != args.run_id:
        raise MissingEvidenceError("the input manifest is not the one of this run", uri=args.manifest_uri)
    output_uri = str(source.get("output_uri") or "")
    manifest_uri = output_uri.rstrip("/") + "/manifest.json"
    prepared = read_json(s3, manifest_uri, "prepared manifest")
    if prepared.get("schema") != PREPARED_SCHEMA or prepared.get("run_id") != args.run_id:
        raise MissingEvidenceError("the prepared manifest is not the one of this run", uri=manifest_uri)
    output = prepared.get("output") or {}
    pii = prepared.get("pii") or {}
    try:
        return PreparedData(
            run_id=args.run_id,
            dataset=str(prepared.get("dataset") or source.get("dataset") or ""),
            prepared_manifest_uri=manifest_uri,
            data_uri=output.get("data_uri"),
            rows=int(output.get("rows") or 0),
            prepared_files=int(prepared.get("prepared_files") or 0),
            quarantined_files=int(prepared.get("quarantined_files") or 0),
            code_version=str((prepared.get("code") or {}).get("sha256") or ""),
            pii_report_uri=prepared.get("pii_report_uri"),
            prepared_at=prepared.get("created_at"),
            undeclared_pii_action=str(pii.get("undeclared_pii") or ""),
            undeclared_pii_files=int(pii.get("undeclared_pii_files") or 0),
            quarantined_rows=int(pii.get("quarantined_rows") or 0),
            redacted_values=int(pii.get("redacted_values") or 0),
        )
    except (ValidationError, TypeError, ValueError):
        raise MissingEvidenceError("the prepared manifest is malformed", uri=manifest_uri) from None


def dataset_of(manifest_uri: str, manifests_prefix: str) -> str:
    """The dataset named in an input manifest's key (`<prefix><dataset>/<run>/input.json`), or ''."""
    try:
        _, key = split_s3_uri(manifest_uri)
    except InvalidEventError:
        return ""
    parts = key.removeprefix(manifests_prefix).split("/")
    return parts[0] if key.startswith(manifests_prefix) and len(parts) == 3 else ""
