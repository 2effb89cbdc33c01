"""Pins the Feature Store moto extension: featurestore-runtime, online store and offline store layout."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

from closedloop_ops import moto_ext
from closedloop_ops.moto_ext.featurestore import flush_offline_store
from support.stack import ACCOUNT, REGION

BUCKET = "features"
GROUP = "closedloop-loans"
DEFINITIONS = [
    {"FeatureName": "application_id", "FeatureType": "String"},
    {"FeatureName": "event_time", "FeatureType": "String"},
    {"FeatureName": "income", "FeatureType": "Fractional"},
    {"FeatureName": "late_payments", "FeatureType": "Integral"},
    {"FeatureName": "purpose", "FeatureType": "String"},
]
OFFLINE_KEY = re.compile(
    rf"^offline/{ACCOUNT}/sagemaker/{REGION}/offline-store/{GROUP}-(\d+)/data/"
    r"year=(\d{4})/month=(\d{2})/day=(\d{2})/hour=(\d{2})/(\d{8}T\d{6}Z)_[A-Za-z0-9]{16}\.parquet$"
)


def create_group(sagemaker: Any, online: bool = True, name: str = GROUP) -> None:
    request: dict[str, Any] = {
        "FeatureGroupName": name,
        "RecordIdentifierFeatureName": "application_id",
        "EventTimeFeatureName": "event_time",
        "FeatureDefinitions": DEFINITIONS,
        "OfflineStoreConfig": {"S3StorageConfig": {"S3Uri": f"s3://{BUCKET}/offline/"}},
        "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/feature-store",
    }
    if online:
        request["OnlineStoreConfig"] = {"EnableOnlineStore": True}
    sagemaker.create_feature_group(**request)


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    from moto import mock_aws

    moto_ext.install()
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        sagemaker = boto3.client("sagemaker", region_name=REGION)
        create_group(sagemaker)
        yield {
            "s3": boto3.client("s3", region_name=REGION),
            "sagemaker": sagemaker,
            "runtime": boto3.client("sagemaker-featurestore-runtime", region_name=REGION),
        }


def record(app: str, when: str, income: str = "5000.5", late: str = "1", purpose: str | None = "car") -> list[Any]:
    values = {"application_id": app, "event_time": when, "income": income, "late_payments": late, "purpose": purpose}
    return [{"FeatureName": k, "ValueAsString": v} for k, v in values.items() if v is not None]


def offline(aws: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]], pa.Schema]]:
    listing = aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix="offline/").get("Contents", [])
    found = []
    for item in listing:
        table = pq.read_table(io.BytesIO(aws["s3"].get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()))
        found.append((item["Key"], table.to_pylist(), table.schema))
    return found


def test_describe_resolves_the_offline_store_uri_as_feature_store_does(aws: dict[str, Any]) -> None:
    described = aws["sagemaker"].describe_feature_group(FeatureGroupName=GROUP)
    epoch = int(described["CreationTime"].timestamp())
    storage = described["OfflineStoreConfig"]["S3StorageConfig"]
    # <S3Uri>/<account>/sagemaker/<region>/offline-store/<group>-<creation epoch>/data (moto leaves out sagemaker/)
    assert storage["ResolvedOutputS3Uri"] == (
        f"s3://{BUCKET}/offline/{ACCOUNT}/sagemaker/{REGION}/offline-store/{GROUP}-{epoch}/data"
    )
    assert described["OfflineStoreConfig"]["DataCatalogConfig"]["TableName"] == f"closedloop_loans_{epoch}"
    assert described["OnlineStoreConfig"] == {"EnableOnlineStore": True}


def test_create_rejects_an_event_time_that_is_not_a_feature(aws: dict[str, Any]) -> None:
    with pytest.raises(ClientError) as error:
        aws["sagemaker"].create_feature_group(
            FeatureGroupName="other",
            RecordIdentifierFeatureName="application_id",
            EventTimeFeatureName="missing",
            FeatureDefinitions=DEFINITIONS,
            OfflineStoreConfig={"S3StorageConfig": {"S3Uri": f"s3://{BUCKET}/offline"}},
            RoleArn=f"arn:aws:iam::{ACCOUNT}:role/feature-store",
        )
    assert error.value.response["Error"]["Code"] == "ValidationError"


def test_the_online_store_keeps_the_latest_event_time(aws: dict[str, Any]) -> None:
    runtime = aws["runtime"]
    # Given a record, then an older version of it put later, then a newer one
    runtime.put_record(FeatureGroupName=GROUP, Record=record("a", "2026-01-01T10:00:00Z", income="1"))
    runtime.put_record(FeatureGroupName=GROUP, Record=record("a", "2026-01-01T09:00:00Z", income="2"))
    online = runtime.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString="a")["Record"]
    # Then the online store keeps the one with the latest event time
    assert {f["FeatureName"]: f["ValueAsString"] for f in online}["income"] == "1"
    runtime.put_record(FeatureGroupName=GROUP, Record=record("a", "2026-01-01T11:00:00.250Z", income="3"))
    online = runtime.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString="a", FeatureNames=["income"])
    assert online["Record"] == [{"FeatureName": "income", "ValueAsString": "3"}]
    # And the offline store keeps all three
    rows = [row for _, found, _ in offline(aws) for row in found]
    assert sorted(row["income"] for row in rows) == [1.0, 2.0, 3.0]
    # An unknown record has no Record (as AWS answers)
    assert "Record" not in runtime.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString="zz")
    batch = runtime.batch_get_record(
        Identifiers=[{"FeatureGroupName": GROUP, "RecordIdentifiersValueAsString": ["a", "zz"]}]
    )
    assert [r["RecordIdentifierValueAsString"] for r in batch["Records"]] == ["a"]


def test_the_offline_store_is_parquet_in_feature_stores_layout(aws: dict[str, Any]) -> None:
    runtime = aws["runtime"]
    runtime.put_record(FeatureGroupName=GROUP, Record=record("a", "2026-03-04T05:06:07Z", purpose=None))
    runtime.put_record(FeatureGroupName=GROUP, Record=record("b", "2026-03-04T05:59:00.500Z"))
    runtime.put_record(FeatureGroupName=GROUP, Record=record("c", "2026-03-04T07:00:00Z"))
    files = offline(aws)
    # one file per hourly event-time partition, named after the latest event time it holds
    assert len(files) == 2
    parsed = sorted(OFFLINE_KEY.match(key).groups()[1:] for key, _, _ in files)  # type: ignore[union-attr]
    assert parsed == [("2026", "03", "04", "05", "20260304T055900Z"), ("2026", "03", "04", "07", "20260304T070000Z")]
    _, rows, schema = sorted(files)[0]
    assert schema.names == [d["FeatureName"] for d in DEFINITIONS] + ["write_time", "api_invocation_time", "is_deleted"]
    assert (schema.field("income").type, schema.field("late_payments").type) == (pa.float64(), pa.int64())
    assert pa.types.is_timestamp(schema.field("write_time").type) and schema.field("is_deleted").type == pa.bool_()
    by_id = {row["application_id"]: row for row in rows}
    assert by_id["a"]["purpose"] is None and by_id["a"]["is_deleted"] is False
    assert by_id["a"]["api_invocation_time"] <= by_id["a"]["write_time"]


def test_records_wait_for_delivery_until_the_store_is_listed_or_flushed(aws: dict[str, Any]) -> None:
    aws["runtime"].put_record(FeatureGroupName=GROUP, Record=record("a", "2026-01-01T10:00:00Z"))
    # a listing of another prefix does not deliver; flushing does
    assert "Contents" not in aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix="elsewhere/")
    assert flush_offline_store() == 1
    assert flush_offline_store() == 0
    assert len(offline(aws)) == 1


def test_delete_record_soft_deletes_online_and_appends_a_marker_offline(aws: dict[str, Any]) -> None:
    runtime = aws["runtime"]
    runtime.put_record(FeatureGroupName=GROUP, Record=record("a", "2026-01-01T10:00:00Z"))
    # a delete older than the online record: the record stays online, the marker still goes offline
    runtime.delete_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString="a", EventTime="2026-01-01T09:00:00Z")
    assert "Record" in runtime.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString="a")
    # a later one deletes it
    runtime.delete_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString="a", EventTime="2026-01-01T11:00:00Z")
    assert "Record" not in runtime.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString="a")
    markers = [row for _, rows, _ in offline(aws) for row in rows if row["is_deleted"]]
    assert sorted(m["event_time"] for m in markers) == ["2026-01-01T09:00:00Z", "2026-01-01T11:00:00Z"]
    assert all(m["income"] is None and m["application_id"] == "a" for m in markers)


def test_a_hard_delete_that_is_not_later_fails_and_writes_nothing(aws: dict[str, Any]) -> None:
    runtime = aws["runtime"]
    runtime.put_record(FeatureGroupName=GROUP, Record=record("a", "2026-01-01T10:00:00Z"))
    with pytest.raises(ClientError) as error:
        runtime.delete_record(
            FeatureGroupName=GROUP,
            RecordIdentifierValueAsString="a",
            EventTime="2026-01-01T10:00:00Z",
            DeletionMode="HardDelete",
        )
    assert error.value.response["Error"]["Code"] == "ValidationError"
    assert not any(row["is_deleted"] for _, rows, _ in offline(aws) for row in rows)


@pytest.mark.parametrize(
    ("values", "why"),
    [
        (record("a", "2026-01-01 10:00:00"), "event time not ISO-8601 UTC"),
        (record("a", "2026-01-01T10:00:00Z", income="lots"), "not Fractional"),
        (record("a", "2026-01-01T10:00:00Z")[1:], "no record identifier"),
        ([*record("a", "2026-01-01T10:00:00Z"), {"FeatureName": "other", "ValueAsString": "1"}], "undefined feature"),
    ],
)
def test_put_record_validates_as_feature_store_does(aws: dict[str, Any], values: list[Any], why: str) -> None:
    with pytest.raises(ClientError) as error:
        aws["runtime"].put_record(FeatureGroupName=GROUP, Record=values)
    assert error.value.response["Error"]["Code"] == "ValidationError", why


def test_an_unknown_group_is_not_found(aws: dict[str, Any]) -> None:
    with pytest.raises(ClientError) as error:
        aws["runtime"].put_record(FeatureGroupName="nope", Record=record("a", "2026-01-01T10:00:00Z"))
    assert error.value.response["Error"]["Code"] == "ResourceNotFound"


def test_a_group_without_online_store_answers_no_get_record(aws: dict[str, Any]) -> None:
    create_group(aws["sagemaker"], online=False, name="offline-only")
    assert "OnlineStoreConfig" not in aws["sagemaker"].describe_feature_group(FeatureGroupName="offline-only")
    aws["runtime"].put_record(FeatureGroupName="offline-only", Record=record("a", "2026-01-01T10:00:00Z"))
    with pytest.raises(ClientError) as error:
        aws["runtime"].get_record(FeatureGroupName="offline-only", RecordIdentifierValueAsString="a")
    assert error.value.response["Error"]["Code"] == "ValidationError"


def test_the_runtime_works_on_the_moto_server() -> None:
    """The local loop's way: a moto server on loopback, requests signed `sagemaker`."""
    from moto.server import ThreadedMotoServer

    moto_ext.install()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        options = {"endpoint_url": f"http://{host}:{port}", "region_name": REGION}
        aws = {
            "s3": boto3.client("s3", **options),
            "sagemaker": boto3.client("sagemaker", **options),
            "runtime": boto3.client("sagemaker-featurestore-runtime", **options),
        }
        aws["s3"].create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        create_group(aws["sagemaker"])
        aws["runtime"].put_record(FeatureGroupName=GROUP, Record=record("a", "2026-01-01T10:00:00Z"))
        assert "Record" in aws["runtime"].get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString="a")
        assert [row["application_id"] for _, rows, _ in offline(aws) for row in rows] == ["a"]
    finally:
        server.stop()


def test_batch_write_record_writes_each_entry_and_reports_the_failed_ones(aws: dict[str, Any]) -> None:
    entries = [
        {"FeatureGroupName": GROUP, "Record": record("a", "2026-01-01T10:00:00Z")},
        {"FeatureGroupName": GROUP, "Record": record("b", "not a time")},
        {"FeatureGroupName": "nope", "Record": record("c", "2026-01-01T10:00:00Z")},
    ]
    response = aws["runtime"].batch_write_record(Entries=entries)
    assert [(e["Entry"]["FeatureGroupName"], e["ErrorCode"]) for e in response["Errors"]] == [
        (GROUP, "ValidationError"),
        ("nope", "ResourceNotFound"),
    ]
    assert [row["application_id"] for _, rows, _ in offline(aws) for row in rows] == ["a"]


def test_describing_an_unknown_group_is_resource_not_found(aws: dict[str, Any]) -> None:
    with pytest.raises(aws["sagemaker"].exceptions.ResourceNotFound):
        aws["sagemaker"].describe_feature_group(FeatureGroupName="nope")


def test_the_report_counts_what_the_offline_store_holds(aws: dict[str, Any]) -> None:
    from types import SimpleNamespace

    from closedloop_ops.feature_store import ingested_record_count, offline_store_counts

    # Given three records of two identifiers, one of them deleted later
    for app, when in (("a", "2026-01-01T10:00:00Z"), ("a", "2026-01-01T11:00:00.5Z"), ("b", "2026-01-01T10:00:00Z")):
        aws["runtime"].put_record(FeatureGroupName=GROUP, Record=record(app, when))
    aws["runtime"].delete_record(
        FeatureGroupName=GROUP, RecordIdentifierValueAsString="b", EventTime="2026-01-02T00:00:00Z"
    )
    # Then the counts come from the offline store
    counts = offline_store_counts(aws["sagemaker"], aws["s3"], GROUP)
    assert (counts["records"], counts["deleted_markers"], counts["live_identifiers"]) == (4, 1, 1)
    stack = SimpleNamespace(
        parameters={"ResourcePrefix": "closedloop"},
        client=lambda service: aws[{"sagemaker": "sagemaker", "s3": "s3"}[service]],
    )
    assert ingested_record_count(stack, "loans") == 3
    assert ingested_record_count(stack, "churn") is None  # no group for that line
