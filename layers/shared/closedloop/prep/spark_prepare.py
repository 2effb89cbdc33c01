#!/usr/bin/env python3
"""closedloop data preparation on Spark: the same preparation as `prepare.py`, one raw file per task.

Run by the Glue Spark job (Glue 5.0: Spark 3.5.4, Python 3.11) and locally with pyspark:

    spark-submit spark_prepare.py --manifest s3://<data bucket>/manifests/<dataset>/<run id>/input.json

The driver reads the run's input manifest (`prepare.open_run`), makes one row per raw object and
hands them to `mapInPandas`; each task prepares its objects with `prepare.prepare_object` — the
single-node engine's own function, so the policy, the detectors, the pseudonyms (the same HMAC key),
the quarantine and the reports are the same by construction — and writes the object's prepared
rows twice under the run's output prefix: as Parquet (`data/parquet/`, every column a string, as
the single-node engine's CSV holds them: for Spark, Athena and Feature Store readers) and as CSV
with its header (`data/csv/`, what the training step reads, one part per file). The driver then
writes the PII report and the output manifest with `prepare.finish_run`.

Exactly once, whatever Spark retries: every object a task writes is named by the object's index in
the run (`data/csv/part-<index>.csv`, `data/parquet/part-<index>.parquet`, the quarantine keys), so
a retried or speculative task replaces what an earlier attempt wrote; a new attempt of the whole
run first removes the run's `data/`; and the manifest, written last, lists the parts of the run: a
reader takes the parts it names, never a listing. The unit of parallelism is the raw file: a run of
N files uses up to N tasks (a single huge file is one task: split such uploads).

Workers read the raw objects at their exact versions with boto3 (S3 through Spark's own readers
cannot name a version) and load the pseudonymisation key from Secrets Manager themselves, once per
partition: the key is never part of a serialized task. Reports, logs and errors carry counts,
positions, column names and reasons only.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import boto3

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # prepare.py and detectors.py beside this script (Glue: --extra-py-files)

import prepare

log = logging.getLogger("closedloop.spark_prepare")

ENGINE = "glue-spark"
RESULT_SCHEMA = "index int, entry string, report string, part string"
PARQUET_BATCH_ROWS = 65536


def _clients(endpoint_url: str | None, region: str | None) -> tuple[Any, Any]:
    options = {k: v for k, v in (("endpoint_url", endpoint_url), ("region_name", region)) if v}
    make: Any = boto3.client
    return make("s3", **options), make("secretsmanager", **options)


def part_keys(out_prefix: str, index: int) -> tuple[str, str]:
    """The CSV and the Parquet part of the run's `index`-th object."""
    stem = f"part-{index:05d}"
    return f"{out_prefix}data/csv/{stem}.csv", f"{out_prefix}data/parquet/{stem}.parquet"


def _write_parquet(csv_path: str, header: list[str], parquet_path: str) -> int:
    """Prepared CSV rows (no header) → Parquet of string columns, streamed in batches; returns the rows."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    schema = pa.schema([(name, pa.string()) for name in header])
    reader = pacsv.open_csv(
        csv_path,
        read_options=pacsv.ReadOptions(column_names=header, block_size=1 << 22),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in header},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )
    rows = 0
    with pq.ParquetWriter(parquet_path, schema) as writer:
        for batch in reader:
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows


def prepare_partition(
    batches: Iterator[Any], run: dict[str, Any], endpoint_url: str | None, region: str | None
) -> Iterator[Any]:
    """mapInPandas: prepare each object of the partition; one result row per object."""
    import pandas as pd

    s3, secrets = _clients(endpoint_url, region)
    run = {**run, "pii_key": prepare.load_key(secrets, run["manifest"]["pseudonymisation_secret_arn"])}
    for batch in batches:
        results = []
        for position, obj_json in zip(batch["index"], batch["object"], strict=True):
            index = int(position)
            with tempfile.TemporaryDirectory(prefix="closedloop-spark-prep-") as work:
                csv_path = os.path.join(work, "part.csv")
                entry, report = prepare.prepare_object(
                    run, index, json.loads(obj_json), s3, csv_path, os.path.join(work, "withheld.csv")
                )
                part = ""
                if entry["status"] == "prepared" and entry.get("rows"):
                    parquet_path = os.path.join(work, "part.parquet")
                    written = _write_parquet(csv_path, run["header"], parquet_path)
                    if written != entry["rows"]:  # the CSV round trip lost or split a row: never pass that on
                        raise RuntimeError(f"file {index}: {written} Parquet rows for {entry['rows']} prepared rows")
                    csv_key, parquet_key = part_keys(run["out_prefix"], index)
                    with_header = os.path.join(work, "part.with-header.csv")
                    with open(with_header, "w", encoding="utf-8", newline="") as out:
                        csv.writer(out, lineterminator="\n").writerow(run["header"])
                        with open(csv_path, encoding="utf-8", newline="") as rows:
                            shutil.copyfileobj(rows, out)
                    s3.upload_file(with_header, run["out_bucket"], csv_key)
                    s3.upload_file(parquet_path, run["out_bucket"], parquet_key)
                    part = f"part-{index:05d}"
            results.append({"index": index, "entry": json.dumps(entry), "report": json.dumps(report), "part": part})
        yield pd.DataFrame(results, columns=["index", "entry", "report", "part"])


def _remove_earlier_attempt(s3: Any, bucket: str, prefix: str) -> int:
    """A new attempt of a run replaces the last one's parts: nothing of it is left to be read."""
    removed = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "data/"):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            removed += len(keys)
    return removed


def ship_beside_me(spark: Any) -> None:
    """Give the workers the modules this script runs with: this script, `prepare.py`, `detectors.py` and
    the pinned wheels where they are beside it (a local run); Glue's `--extra-py-files` does it there."""
    for path in [os.path.join(HERE, name) for name in ("spark_prepare.py", "prepare.py", "detectors.py")]:
        if os.path.exists(path):
            spark.sparkContext.addPyFile(path)
    for wheel in sorted(glob.glob(os.path.join(HERE, "wheels", "*.whl"))):
        spark.sparkContext.addPyFile(wheel)


def run(manifest_uri: str, spark: Any, s3: Any, secrets: Any) -> dict[str, Any]:
    """Prepare one run on Spark; returns the output manifest it wrote."""
    opened = prepare.open_run(manifest_uri, s3, secrets)
    objects = opened["manifest"]["objects"]
    removed = _remove_earlier_attempt(s3, opened["out_bucket"], opened["out_prefix"])
    if removed:
        log.info("removed %d part(s) of an earlier attempt of this run", removed)
    shipped = {k: v for k, v in opened.items() if k != "pii_key"}  # workers load the key themselves
    endpoint_url = os.environ.get("AWS_ENDPOINT_URL") or None
    region = s3.meta.region_name
    results: list[Any] = []
    if objects:
        rows = [(index, json.dumps(obj)) for index, obj in enumerate(objects)]
        frame = spark.createDataFrame(rows, "index int, object string")
        frame = frame.repartition(min(len(objects), max(1, spark.sparkContext.defaultParallelism * 4)), "index")
        results = frame.mapInPandas(
            lambda batches: prepare_partition(batches, shipped, endpoint_url, region), RESULT_SCHEMA
        ).collect()
    results = sorted(results, key=lambda row: row["index"])
    inputs = [json.loads(row["entry"]) for row in results]
    files_report = [json.loads(row["report"]) for row in results]
    keys = [part_keys(opened["out_prefix"], row["index"]) for row in results if row["part"]]
    base = f"s3://{opened['out_bucket']}/"
    data = {
        # what training reads: the CSV parts (a SageMaker channel of the prefix takes them all)
        "data_uri": f"{base}{opened['out_prefix']}data/csv/" if keys else None,
        "format": "csv-parts",
        "parts": [base + csv_key for csv_key, _ in keys],
        "parquet": {
            "uri": f"{base}{opened['out_prefix']}data/parquet/" if keys else None,
            "parts": [base + parquet_key for _, parquet_key in keys],
        },
    }
    output: dict[str, Any] = prepare.finish_run(opened, s3, inputs, files_report, data, ENGINE)
    return output


def spark_session() -> Any:
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the workers run this interpreter
    return SparkSession.builder.appName("closedloop-prepare").getOrCreate()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[1])
    parser.add_argument("--manifest", required=True, help="s3:// URI of the run's input manifest")
    # Glue passes its own arguments (--JOB_ID, --scriptLocation…): ignore what is not ours.
    args, _ = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    spark = spark_session()
    ship_beside_me(spark)
    code: int = prepare.run_job(lambda: run(args.manifest, spark, boto3.client("s3"), boto3.client("secretsmanager")))
    return code


if __name__ == "__main__":
    sys.exit(main())
