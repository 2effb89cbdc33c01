"""A line's feature group on moto: the preparation ingests its rows, training reads them point-in-time."""

from __future__ import annotations

import csv
import io
import json
from types import SimpleNamespace
from typing import Any

import boto3
import pyarrow.parquet as pq
from integration.test_prepare_script import upload

from closedloop.dataprep.arrival import DataPrepRun
from closedloop.dataprep.requests import build_prep_manifest, manifest_key
from closedloop.featurestore import FeatureStoreSpec, build_create_feature_group_request, ingestion_plan
from closedloop.line import LineResources, load_line
from closedloop.prep import prepare
from closedloop_ops import synthetic
from support.stack import ACCOUNT, REGION, Stack
from support.steps import load_step

SPEC = FeatureStoreSpec(enabled=True, record_identifier="application_id")


dataset = load_step("dataset")


def create_group(stack: Stack, request: dict[str, Any]) -> str:
    """The group of the request; the stack's own when it has it already (declared by the same request)."""
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    try:
        sagemaker.create_feature_group(**request)
    except sagemaker.exceptions.ResourceInUse:
        described = sagemaker.describe_feature_group(FeatureGroupName=request["FeatureGroupName"])
        assert described["RecordIdentifierFeatureName"] == request["RecordIdentifierFeatureName"]
        assert described["EventTimeFeatureName"] == request["EventTimeFeatureName"]
    return str(request["FeatureGroupName"])


def same_values(rows: list[list[str]], types: dict[str, str], header: list[str]) -> list[tuple[Any, ...]]:
    """Rows compared as training reads them: numbers as numbers (Fractional features come back as 3.0 → "3")."""
    numeric = [types[name] == "numeric" for name in header]
    return sorted(
        tuple(float(v) if is_number and v != "" else v for v, is_number in zip(row, numeric, strict=True))
        for row in rows
    )


def read_csv(bucket: str, key: str) -> list[list[str]]:
    body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    return list(csv.reader(io.StringIO(body)))


def test_the_preparation_ingests_its_rows_and_training_reads_them_back(stack: Stack) -> None:
    # Given the loans line's feature group (as the template declares it) and a run of two files
    line = load_line("loans")
    group = LineResources.of(stack.settings.resource_prefix, stack.settings.raw_prefix, "loans").feature_group
    create_group(
        stack,
        build_create_feature_group_request(
            SPEC,
            line,
            name=group,
            offline_s3_uri=f"s3://{stack.data_bucket}/feature-store",
            role_arn=f"arn:aws:iam::{ACCOUNT}:role/feature-store",
        ),
    )
    records = list(synthetic.rows(240, seed=31))
    objects = [
        upload(stack, "raw/loans/a.csv", synthetic.to_csv(records[:150]).encode()),
        upload(stack, "raw/loans/b.jsonl", synthetic.to_jsonl(records[150:]).encode()),
    ]
    run = DataPrepRun(dataset="loans", objects=tuple(objects))
    manifest = build_prep_manifest(
        run,
        line.dataset_policy(),
        data_bucket=stack.data_bucket,
        prepared_prefix="prepared/",
        quarantine_bucket=stack.settings.quarantine_bucket,
        secret_arn=stack.settings.pseudonymisation_secret_arn,
        feature_store=ingestion_plan(SPEC, line, group),
    )
    key = manifest_key("manifests/", "loans", run.run_id)
    boto3.client("s3").put_object(Bucket=stack.data_bucket, Key=key, Body=json.dumps(manifest).encode())
    # When the preparation runs
    output = prepare.run(f"s3://{stack.data_bucket}/{key}", boto3.client("s3"), boto3.client("secretsmanager"))
    # Then every prepared row is a record of the group, and the manifest says so
    ingestion = output["feature_store"]
    assert output["output"]["rows"] == 240
    assert (ingestion["feature_group"], ingestion["ingested_records"], ingestion["rows_not_ingested"]) == (
        group,
        240,
        0,
    )
    assert ingestion["api"] == "BatchWriteRecord"
    assert (ingestion["record_identifier"], ingestion["event_time"], ingestion["event_time_feature"]) == (
        "application_id",
        None,
        "event_time",
    )
    written = json.loads(
        boto3.client("s3")
        .get_object(Bucket=stack.data_bucket, Key=f"prepared/loans/{run.run_id}/manifest.json")["Body"]
        .read()
    )
    assert written["feature_store"] == ingestion
    # And the offline store holds them without PII and without the label
    described = boto3.client("sagemaker", region_name=REGION).describe_feature_group(FeatureGroupName=group)
    resolved = described["OfflineStoreConfig"]["S3StorageConfig"]["ResolvedOutputS3Uri"]
    rows, objects_read = dataset.read_offline_store(boto3.client("s3"), resolved)
    assert len(rows) == 240 and {row["event_time"] for row in rows} == {ingestion["event_time_value"]}
    assert "approved" not in rows[0] and not any(row["is_deleted"] for row in rows)
    offline_text = json.dumps(rows, default=str)
    for value in synthetic.pii_values(records):
        assert value not in offline_text
    # When training builds its dataset from the offline store
    header, joined, lineage = dataset.build_dataset(
        boto3.client("s3"), written, sagemaker=boto3.client("sagemaker", region_name=REGION)
    )
    # Then it is the prepared data (nothing newer exists), with the objects it read in its lineage
    prepared = read_csv(stack.data_bucket, f"prepared/loans/{run.run_id}/data.csv")
    assert header == prepared[0]
    assert same_values(joined, output["output"]["column_types"], header) == same_values(
        prepared[1:], output["output"]["column_types"], header
    )
    assert (lineage["feature_group"], lineage["rows"], lineage["deleted"]) == (group, 240, 0)
    assert {o["key"] for o in lineage["objects"]} == {o["key"] for o in objects_read}
    assert all(o["etag"] and o["version_id"] for o in lineage["objects"])  # the data bucket is versioned


def test_a_line_without_a_feature_group_ingests_nothing(stack: Stack) -> None:
    # Given a run of a line that declares no feature store (the manifest has no feature_store)
    from closedloop.featurestore import FeatureStoreSpec

    line = load_line("loans").model_copy(update={"feature_store": FeatureStoreSpec()})
    assert not line.feature_store.enabled and ingestion_plan(line.feature_store, line, "g") is None
    obj = upload(stack, "raw/loans/a.csv", synthetic.to_csv(list(synthetic.rows(20, seed=3))).encode())
    run = DataPrepRun(dataset="loans", objects=(obj,))
    manifest = build_prep_manifest(
        run,
        line.dataset_policy(),
        data_bucket=stack.data_bucket,
        prepared_prefix="prepared/",
        quarantine_bucket=stack.settings.quarantine_bucket,
        secret_arn=stack.settings.pseudonymisation_secret_arn,
    )
    assert "feature_store" not in manifest
    key = manifest_key("manifests/", "loans", run.run_id)
    boto3.client("s3").put_object(Bucket=stack.data_bucket, Key=key, Body=json.dumps(manifest).encode())
    output = prepare.run(f"s3://{stack.data_bucket}/{key}", boto3.client("s3"), boto3.client("secretsmanager"))
    # Then the run is prepared as before, and the dataset step passes its rows through
    assert "feature_store" not in output
    _, rows, lineage = dataset.build_dataset(boto3.client("s3"), output)
    assert (len(rows), lineage["source"]) == (20, "prepared data")


class PutRecordOnly:
    """A featurestore-runtime client of a boto3 that predates BatchWriteRecord (Glue's Python shell)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls = 0
        self.meta = SimpleNamespace(service_model=SimpleNamespace(operation_names=["PutRecord", "GetRecord"]))

    def put_record(self, **request: Any) -> Any:
        self.calls += 1
        return self._client.put_record(**request)


def test_an_older_boto3_ingests_record_by_record(stack: Stack) -> None:
    # Given a group and a prepared part of three rows, one without its record identifier
    boto3.client("sagemaker", region_name=REGION).create_feature_group(
        FeatureGroupName=GROUP,
        RecordIdentifierFeatureName="application_id",
        EventTimeFeatureName="event_time",
        FeatureDefinitions=[
            {"FeatureName": "application_id", "FeatureType": "String"},
            {"FeatureName": "event_time", "FeatureType": "String"},
            {"FeatureName": "income", "FeatureType": "Fractional"},
        ],
        OfflineStoreConfig={"S3StorageConfig": {"S3Uri": f"s3://{stack.data_bucket}/feature-store"}},
        RoleArn=f"arn:aws:iam::{ACCOUNT}:role/feature-store",
    )
    body = "application_id,income,approved\nA,1.5,1\n,2,0\nB,,1\n"
    boto3.client("s3").put_object(Bucket=stack.data_bucket, Key="prepared/x/data.csv", Body=body.encode())
    plan = {
        "feature_group": GROUP,
        "record_identifier": "application_id",
        "event_time": None,
        "event_time_feature": "event_time",
        "features": ["application_id", "income", "event_time"],
    }
    client = PutRecordOnly(boto3.client("sagemaker-featurestore-runtime", region_name=REGION))
    # When the preparation ingests it with a client without BatchWriteRecord
    lineage = prepare.ingest_features(
        plan, boto3.client("s3"), {"data_uri": f"s3://{stack.data_bucket}/prepared/x/data.csv"}, client
    )
    # Then each row with an identifier is put on its own, the other counted
    assert (lineage["api"], lineage["ingested_records"], lineage["rows_not_ingested"], client.calls) == (
        "PutRecord",
        2,
        1,
        2,
    )


# -- point-in-time correctness on the offline store --------------------------------------------

GROUP = "pit"
LABELS = "labels/run.csv"


def put(runtime: Any, app: str, when: str, income: str) -> None:
    record = {"application_id": app, "event_time": when, "income": income}
    runtime.put_record(
        FeatureGroupName=GROUP, Record=[{"FeatureName": k, "ValueAsString": v} for k, v in record.items()]
    )


def test_training_uses_no_feature_value_from_after_the_label_time(stack: Stack) -> None:
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    sagemaker.create_feature_group(
        FeatureGroupName=GROUP,
        RecordIdentifierFeatureName="application_id",
        EventTimeFeatureName="event_time",
        FeatureDefinitions=[
            {"FeatureName": "application_id", "FeatureType": "String"},
            {"FeatureName": "event_time", "FeatureType": "String"},
            {"FeatureName": "income", "FeatureType": "Fractional"},
        ],
        OfflineStoreConfig={"S3StorageConfig": {"S3Uri": f"s3://{stack.data_bucket}/feature-store"}},
        RoleArn=f"arn:aws:iam::{ACCOUNT}:role/feature-store",
    )
    runtime = boto3.client("sagemaker-featurestore-runtime", region_name=REGION)
    # Given, in the order they are written:
    put(runtime, "A", "2026-05-01T10:00:00Z", "1")  # A's value at 10:00
    put(runtime, "A", "2026-05-01T12:00:00Z", "2")  # A's value from after its label (11:00)
    put(runtime, "B", "2026-05-01T10:00:00Z", "5")
    put(runtime, "B", "2026-05-01T10:30:00Z", "6")  # late-arriving: written last, but in effect at 10:30
    put(runtime, "C", "2026-05-01T09:00:00Z", "7")
    runtime.delete_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString="C", EventTime="2026-05-01T10:00:00Z")
    put(runtime, "E", "2026-05-01T10:00:00Z", "8")
    runtime.delete_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString="E", EventTime="2026-05-01T13:00:00Z")
    # And label rows at their label times (D has no feature record at all)
    labels = [
        ["A", "2026-05-01T11:00:00Z", "", "1"],
        ["B", "2026-05-01T11:00:00Z", "", "0"],
        ["C", "2026-05-01T11:00:00Z", "", "1"],
        ["C", "2026-05-01T09:30:00Z", "", "0"],
        ["D", "2026-05-01T11:00:00Z", "", "1"],
        ["E", "2026-05-01T11:00:00Z", "", "0"],
    ]
    body = "application_id,event_time,income,approved\n" + "".join(",".join(row) + "\n" for row in labels)
    boto3.client("s3").put_object(Bucket=stack.data_bucket, Key=LABELS, Body=body.encode())
    manifest = {
        "run_id": "r1",
        "output": {
            "columns": ["application_id", "event_time", "income", "approved"],
            "data_uri": f"s3://{stack.data_bucket}/{LABELS}",
            "label": "approved",
        },
        "feature_store": {
            "feature_group": GROUP,
            "record_identifier": "application_id",
            "event_time": "event_time",
            "event_time_feature": "event_time",
            "event_time_value": None,
            "features": ["application_id", "event_time", "income"],
        },
    }
    # When training builds its dataset
    _, rows, lineage = dataset.build_dataset(boto3.client("s3"), manifest, sagemaker=sagemaker)
    found = {(row[0], row[3]): (row[1], row[2]) for row in rows}
    # Then A's label (11:00) gets A's 10:00 value, not the 12:00 one written after
    assert found[("A", "1")] == ("2026-05-01T10:00:00Z", "1")
    # B's gets the late-arriving 10:30 value: in effect before the label, though written last
    assert found[("B", "0")] == ("2026-05-01T10:30:00Z", "6")
    # C deleted at 10:00: its 11:00 label has no features (dropped); its 09:30 label has the 09:00 value
    assert ("C", "1") not in found and found[("C", "0")] == ("2026-05-01T09:00:00Z", "7")
    # E deleted only after its label: the value stands; D never had features
    assert found[("E", "0")] == ("2026-05-01T10:00:00Z", "8") and ("D", "1") not in found
    assert (lineage["joined"], lineage["deleted"], lineage["no_feature_record"]) == (4, 1, 1)
    assert lineage["as_of_rule"] == dataset.AS_OF_RULE
    assert lineage["objects"] and all(o["key"].endswith(".parquet") and o["etag"] for o in lineage["objects"])
    # And only partitions that can hold a record as of the latest label were read (13:00 holds E's delete)
    assert not any("/hour=13/" in o["key"] for o in lineage["objects"])
    table = pq.read_table(
        io.BytesIO(
            boto3.client("s3").get_object(Bucket=stack.data_bucket, Key=lineage["objects"][0]["key"])["Body"].read()
        )
    )
    assert table.schema.names[-3:] == ["write_time", "api_invocation_time", "is_deleted"]
