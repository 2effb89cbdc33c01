"""The Spark preparation engine against the single-node script: the same rows, pseudonyms, quarantine,
reports and lineage from the same run — and exactly once whatever Spark retries.

Spark's Python workers are processes of their own, so the AWS they reach is a moto server on
loopback (an in-process mock would be invisible to them); the one Spark session of the test run
comes from the `spark` fixture.
"""

from __future__ import annotations

import csv
import io
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pandas as pd
import pyarrow.parquet as pq
import pytest
from integration.test_prepare_script import upload, write_manifest

from closedloop import aws
from closedloop.prep import prepare
from closedloop.settings import load_settings
from closedloop_ops import synthetic
from support.stack import REGION, Stack, provision, stack_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    from closedloop_ops import moto_ext

    moto_ext.install()
    running = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    running.start()
    host, port = running.get_host_and_port()
    yield f"http://{host}:{port}"
    running.stop()


@pytest.fixture
def served(server: str, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """The stack's resources on the moto server, every client of this process pointed at it."""
    urllib.request.urlopen(urllib.request.Request(f"{server}/moto-api/reset", method="POST")).read()
    env = stack_env()
    for name, value in {**env, "AWS_ENDPOINT_URL": server}.items():
        monkeypatch.setenv(name, value)
    aws.reset_clients()
    load_settings.cache_clear()
    return provision(env)


def s3() -> Any:
    return boto3.client("s3", region_name=REGION)


def secrets() -> Any:
    return boto3.client("secretsmanager", region_name=REGION)


def read(bucket: str, key: str) -> bytes:
    return s3().get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]


def parquet_rows(uris: list[str]) -> list[list[str]]:
    rows: list[list[str]] = []
    for uri in uris:
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        table = pq.read_table(io.BytesIO(read(bucket, key)))
        assert all(str(field.type) == "string" for field in table.schema)
        rows.extend([list(values) for values in zip(*table.to_pydict().values(), strict=True)])
    return rows


def csv_rows(uris: list[str], header: list[str]) -> list[list[str]]:
    rows: list[list[str]] = []
    for uri in uris:
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        part = list(csv.reader(io.StringIO(read(bucket, key).decode())))
        assert part[0] == header
        rows.extend(part[1:])
    return rows


def uploads(stack: Stack) -> list[Any]:
    """Clean files in both formats, one with an undeclared e-mail (file quarantined), one not UTF-8."""
    records = list(synthetic.rows(900, seed=31))
    leaky = list(synthetic.rows(12, seed=32, start=900))
    leaky[5]["notes"] = "write to another.person@example.net"
    return [
        upload(stack, "raw/loans/a.csv", synthetic.to_csv(records[:300]).encode()),
        upload(stack, "raw/loans/b.jsonl", synthetic.to_jsonl(records[300:650]).encode()),
        upload(stack, "raw/loans/leaky.csv", synthetic.to_csv(leaky).encode()),
        upload(stack, "raw/loans/c.csv", synthetic.to_csv(records[650:]).encode()),
        upload(stack, "raw/loans/latin1.csv", synthetic.to_csv(records[:3]).encode() + "é".encode("latin-1")),
    ]


def test_the_spark_engine_prepares_what_the_single_node_script_prepares(served: Stack, spark: Any) -> None:
    import spark_prepare

    # Given one run of five files, prepared first by the single-node script
    manifest_uri, run = write_manifest(served, uploads(served))
    prefix = f"prepared/loans/{run.run_id}/"
    single = prepare.run(manifest_uri, s3(), secrets())
    single_rows = list(csv.reader(io.StringIO(read(served.data_bucket, prefix + "data.csv").decode())))
    single_report = json.loads(read(served.data_bucket, prefix + "pii_report.json"))
    quarantined = sorted(o["Key"] for o in s3().list_objects_v2(Bucket=served.settings.quarantine_bucket)["Contents"])
    # When the same run is prepared on Spark
    output = spark_prepare.run(manifest_uri, spark, s3(), secrets())
    # Then the rows are the same (order aside), pseudonyms included, as Parquet parts of string columns
    # and as the CSV parts training reads, each with the header
    assert single_rows[0] == output["output"]["columns"]
    assert sorted(parquet_rows(output["output"]["parquet"]["parts"])) == sorted(single_rows[1:])
    assert sorted(csv_rows(output["output"]["parts"], single_rows[0])) == sorted(single_rows[1:])
    assert output["output"]["rows"] == single["output"]["rows"] == len(single_rows) - 1 == 900
    assert output["output"]["format"] == "csv-parts"
    assert output["output"]["data_uri"] == f"s3://{served.data_bucket}/{prefix}data/csv/"
    assert len(output["output"]["parts"]) == 3
    # and the PII report and the lineage are the single-node script's, the engine aside
    assert json.loads(read(served.data_bucket, prefix + "pii_report.json")) == single_report
    assert output["engine"] == "glue-spark"
    for field in ("inputs", "policy", "code", "pii", "prepared_files", "quarantined_files", "input_manifest"):
        assert output[field] == single[field], field
    assert [i["status"] for i in output["inputs"]] == ["prepared", "prepared", "quarantined", "prepared", "quarantined"]
    # and quarantine holds the same objects, once each
    assert sorted(o["Key"] for o in s3().list_objects_v2(Bucket=served.settings.quarantine_bucket)["Contents"]) == (
        quarantined
    )
    # and no value of the PII columns reached the prepared data
    text = json.dumps(parquet_rows(output["output"]["parquet"]["parts"]))
    for value in synthetic.pii_values(list(synthetic.rows(900, seed=31))):
        assert value not in text


def test_a_new_attempt_of_a_run_replaces_the_last_and_a_retried_task_adds_nothing(served: Stack, spark: Any) -> None:
    import spark_prepare

    # Given a run prepared on Spark once, and a part left by an attempt that crashed before its manifest
    manifest_uri, run = write_manifest(served, uploads(served))
    prefix = f"prepared/loans/{run.run_id}/"
    first = spark_prepare.run(manifest_uri, spark, s3(), secrets())
    s3().put_object(Bucket=served.data_bucket, Key=prefix + "data/parquet/part-00042.parquet", Body=b"stale")
    # When the run is prepared again
    again = spark_prepare.run(manifest_uri, spark, s3(), secrets())
    # Then it holds exactly its own parts, with the same rows: nothing appended, nothing stale
    listed = sorted(
        o["Key"] for o in s3().list_objects_v2(Bucket=served.data_bucket, Prefix=prefix + "data/")["Contents"]
    )
    in_bucket = [f"s3://{served.data_bucket}/{key}" for key in listed]
    parts = sorted(again["output"]["parts"] + again["output"]["parquet"]["parts"])
    assert in_bucket == parts == sorted(first["output"]["parts"] + first["output"]["parquet"]["parts"])
    assert sorted(parquet_rows(again["output"]["parquet"]["parts"])) == sorted(
        parquet_rows(first["output"]["parquet"]["parts"])
    )

    # When one object's task runs twice (a retried or speculative task)
    opened = prepare.open_run(manifest_uri, s3(), secrets())
    shipped = {k: v for k, v in opened.items() if k != "pii_key"}
    batch = pd.DataFrame({"index": [0], "object": [json.dumps(opened["manifest"]["objects"][0])]})
    results = [
        next(spark_prepare.prepare_partition(iter([batch]), shipped, served_endpoint(), REGION)) for _ in range(2)
    ]
    # Then both attempts wrote the same part, which holds the object's rows once
    assert results[0]["part"][0] == results[1]["part"][0] == "part-00000"
    rows = parquet_rows([f"s3://{served.data_bucket}/{spark_prepare.part_keys(prefix, 0)[1]}"])
    assert len(rows) == json.loads(results[1]["entry"][0])["rows"] == 300


def served_endpoint() -> str:
    import os

    return os.environ["AWS_ENDPOINT_URL"]
