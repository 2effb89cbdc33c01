"""Dataset step: the training set built from the line's feature group, point-in-time correct.

Runs in a Processing job (the scikit-learn container: Python 3.9+, boto3, pyarrow — the
`sagemaker-scikit-learn:1.4-2` image installs pyarrow 17.0.0 — no pandas) and locally:

    python pipelines/steps/dataset.py --manifest s3://<data>/prepared/<line>/<run>/manifest.json --output out/dataset

The label rows are the prepared run's rows: each row's record identifier, its label and its label
time (the row's declared event-time column, or the run's ingestion time recorded in the manifest).
The features come from the feature group's offline store (Parquet under `ResolvedOutputS3Uri`),
joined as Feature Store's point-in-time join does: for each label row, the feature record of the
same identifier with the latest event time at or before the label time — the latest
`api_invocation_time`, then `write_time`, among records with that event time. When that record is
a delete marker (`is_deleted`), the record did not exist at the label time and the row is dropped;
a label row with no such record is dropped too (both counted). A value written later with a later
event time is never used for an earlier label; a value written later with an earlier event time
(late-arriving data) is. With `--as-of`, only records written (`write_time`) at or before that time
count: the same dataset can be built again later.

Output (`--output`): `data.csv`, with the prepared data's header (the train step reads it as it
reads prepared data), and `dataset.json`, the lineage: the feature group, the offline store's URI,
the as-of rule, every S3 object read (key, ETag, version id) and the counts. A run whose manifest
names no feature group passes its prepared rows through unchanged (and says so in `dataset.json`).
Never a data value in a log or a report.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import io
import json
import os
import re
import sys
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, List, Optional, Tuple

import boto3

PROCESSING = "/opt/ml/processing"
AS_OF_RULE = (
    "per label row: the feature record of the same record identifier with the latest event_time <= the label "
    "time (ties: latest api_invocation_time, then write_time); dropped when that record is a delete marker "
    "(is_deleted) or there is none"
)
PARTITION = re.compile(r"/year=(\d{4})/month=(\d{2})/day=(\d{2})/hour=(\d{2})/")
OFFLINE_COLUMNS = ("write_time", "api_invocation_time", "is_deleted")


class DatasetError(Exception):
    """The dataset cannot be built; the message names files, columns and counts only."""


def event_seconds(value: Any) -> float:
    """An event time (ISO-8601 UTC text, or seconds since the epoch) as seconds since the epoch."""
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def as_text(value: Any) -> str:
    """A feature value as the prepared CSV writes it: null → empty, 3.0 → "3"."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


# --- the point-in-time join ------------------------------------------------------------------


def _version(record: Dict[str, Any], event_time_feature: str) -> Tuple[float, float, float]:
    return (
        event_seconds(record[event_time_feature]),
        event_seconds(record["api_invocation_time"]) if record.get("api_invocation_time") is not None else 0.0,
        event_seconds(record["write_time"]) if record.get("write_time") is not None else 0.0,
    )


def point_in_time_join(
    labels: Iterable[Tuple[str, float]],
    records: Iterable[Dict[str, Any]],
    record_identifier: str,
    event_time_feature: str,
    written_before: Optional[float] = None,
) -> Tuple[List[Optional[Dict[str, Any]]], Dict[str, int]]:
    """For each (record id, label time), the feature record as of that time (None: dropped).

    `records` are offline-store rows (features plus `write_time`, `api_invocation_time`,
    `is_deleted`). Returns the records in label order and the counts of what was dropped and why.
    """
    history: Dict[str, List[Tuple[Tuple[float, float, float], Dict[str, Any]]]] = {}
    ignored_late_writes = 0
    for record in records:
        written = record.get("write_time")
        if written_before is not None and written is not None and event_seconds(written) > written_before:
            ignored_late_writes += 1
            continue
        history.setdefault(str(record[record_identifier]), []).append((_version(record, event_time_feature), record))
    for versions in history.values():
        versions.sort(key=lambda item: item[0])
    keys = {record_id: [v[0][0] for v in versions] for record_id, versions in history.items()}
    joined: List[Optional[Dict[str, Any]]] = []
    counts = {"label_rows": 0, "joined": 0, "no_feature_record": 0, "deleted": 0, "written_after_as_of": 0}
    counts["written_after_as_of"] = ignored_late_writes
    for record_id, label_time in labels:
        counts["label_rows"] += 1
        versions = history.get(record_id)
        position = bisect.bisect_right(keys[record_id], label_time) if versions else 0
        if not versions or position == 0:
            counts["no_feature_record"] += 1
            joined.append(None)
            continue
        chosen = versions[position - 1][1]
        if chosen.get("is_deleted"):
            counts["deleted"] += 1
            joined.append(None)
            continue
        counts["joined"] += 1
        joined.append(chosen)
    return joined, counts


# --- S3 ------------------------------------------------------------------------------------------


def split_uri(uri: str) -> Tuple[str, str]:
    if not uri.startswith("s3://"):
        raise DatasetError("not an s3:// URI")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def _partition_start(key: str) -> Optional[float]:
    found = PARTITION.search(key)
    if not found:
        return None
    year, month, day, hour = (int(part) for part in found.groups())
    return datetime(year, month, day, hour, tzinfo=timezone.utc).timestamp()


def read_offline_store(
    s3: Any, resolved_uri: str, not_after: Optional[float] = None
) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """Every record of the offline store's Parquet files (those of hourly partitions starting at or
    before `not_after`: later ones cannot hold a record as of it) and the objects read (key, ETag,
    version id, size)."""
    import pyarrow.parquet as pq  # noqa: PLC0415 - only a line with a feature group reads Parquet

    bucket, prefix = split_uri(resolved_uri.rstrip("/") + "/")
    records: List[Dict[str, Any]] = []
    objects: List[Dict[str, Any]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"]
            start = _partition_start(key)
            if not key.endswith(".parquet") or (not_after is not None and start is not None and start > not_after):
                continue
            response = s3.get_object(Bucket=bucket, Key=key)
            body = response["Body"].read()
            records.extend(pq.read_table(io.BytesIO(body)).to_pylist())
            objects.append(
                {
                    "key": key,
                    "etag": response.get("ETag", item.get("ETag", "")).strip('"'),
                    "version_id": response.get("VersionId"),
                    "size": len(body),
                }
            )
    return records, objects


def read_json_uri(s3: Any, uri: str) -> Dict[str, Any]:
    if uri.startswith("s3://"):
        bucket, key = split_uri(uri)
        document: Dict[str, Any] = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        return document
    with open(uri, encoding="utf-8") as handle:
        local: Dict[str, Any] = json.load(handle)
    return local


def prepared_rows(s3: Any, manifest: Dict[str, Any]) -> Tuple[List[str], List[Dict[str, str]]]:
    """The header and rows of the run's prepared data, from the parts its manifest lists."""
    output = manifest["output"]
    uris = list(output.get("parts") or ([output["data_uri"]] if output.get("data_uri") else []))
    header: List[str] = list(output["columns"])
    rows: List[Dict[str, str]] = []
    for number, uri in enumerate(uris, start=1):
        bucket, key = split_uri(uri)
        text = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if reader.fieldnames != header:
            raise DatasetError(f"part {number} of the prepared data has another header than the manifest's columns")
        rows.extend(reader)
    return header, rows


# --- the step ------------------------------------------------------------------------------------


def build_dataset(
    s3: Any,
    manifest: Dict[str, Any],
    offline_store_uri: Optional[str] = None,
    sagemaker: Any = None,
    as_of: Optional[str] = None,
) -> Tuple[List[str], List[List[str]], Dict[str, Any]]:
    """The training rows (prepared header) and the dataset's lineage, from a prepared run's manifest."""
    header, rows = prepared_rows(s3, manifest)
    ingestion = manifest.get("feature_store")
    if not ingestion:
        lineage = {"source": "prepared data", "reason": "the run's line ingests into no feature group"}
        return header, [[row[name] for name in header] for row in rows], {**lineage, "rows": len(rows)}
    group = ingestion["feature_group"]
    if offline_store_uri is None:
        described = sagemaker.describe_feature_group(FeatureGroupName=group)
        offline_store_uri = described["OfflineStoreConfig"]["S3StorageConfig"]["ResolvedOutputS3Uri"]
    record_identifier = ingestion["record_identifier"]
    declared = ingestion.get("event_time")
    labels: List[Tuple[str, float]] = []
    for row in rows:
        when = row.get(declared, "") if declared else ingestion["event_time_value"]
        labels.append((row[record_identifier], event_seconds(when)))
    not_after = max((t for _, t in labels), default=None)
    records, objects = read_offline_store(s3, offline_store_uri, not_after)
    written_before = event_seconds(as_of) if as_of else None
    joined, counts = point_in_time_join(
        labels, records, record_identifier, ingestion["event_time_feature"], written_before
    )
    label = manifest["output"].get("label")
    features = set(ingestion["features"])
    out: List[List[str]] = []
    for row, record in zip(rows, joined):
        if record is None:
            continue
        out.append([as_text(record.get(name)) if name in features and name != label else row[name] for name in header])
    lineage = {
        "source": "feature group offline store",
        "feature_group": group,
        "offline_store_uri": offline_store_uri,
        "record_identifier": record_identifier,
        "event_time": declared,
        "event_time_feature": ingestion["event_time_feature"],
        "label_time": f"the rows' {declared}" if declared else "the run's ingestion time (event_time_value)",
        "event_time_value": ingestion.get("event_time_value"),
        "as_of_rule": AS_OF_RULE,
        "as_of": as_of,
        "objects": objects,
        "offline_records_read": len(records),
        **counts,
        "rows": len(out),
        "prepared_manifest_run": manifest.get("run_id"),
    }
    return header, out, lineage


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--manifest", required=True, help="the prepared run's manifest.json (s3:// or a path)")
    parser.add_argument("--output", default=f"{PROCESSING}/dataset")
    parser.add_argument("--offline-store-uri", default=None, help="default: the group's ResolvedOutputS3Uri")
    parser.add_argument("--as-of", default=None, help="ISO-8601: only records written at or before it count")
    parser.add_argument("--min-rows", type=int, default=1, help="fail with fewer joined rows")
    args, _ = parser.parse_known_args(argv)
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    s3 = boto3.client("s3")
    manifest = read_json_uri(s3, args.manifest)
    sagemaker = boto3.client("sagemaker") if manifest.get("feature_store") and not args.offline_store_uri else None
    try:
        header, rows, lineage = build_dataset(s3, manifest, args.offline_store_uri, sagemaker, args.as_of)
    except DatasetError as exc:
        print(f"closedloop dataset step failed: {exc}", file=sys.stderr)
        return 1
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, "data.csv"), "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    with open(os.path.join(args.output, "dataset.json"), "w", encoding="utf-8") as handle:
        json.dump(lineage, handle, indent=1, sort_keys=True)
    counts = {k: lineage.get(k) for k in ("rows", "label_rows", "no_feature_record", "deleted") if k in lineage}
    print(f"closedloop dataset: {json.dumps(counts, sort_keys=True)}, {len(lineage.get('objects', []))} objects read")
    if len(rows) < args.min_rows:
        print(f"closedloop dataset step failed: {len(rows)} rows, fewer than {args.min_rows}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
