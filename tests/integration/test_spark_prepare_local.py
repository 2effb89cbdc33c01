"""The Glue Spark engine in the local loop: uploads → route 1 starts the Spark job → the local job
runner runs spark_prepare.py on local pyspark → the job's state change → route 2 → the training
pipeline reads its CSV parts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from closedloop.ledger import Ledger
from closedloop_ops import synthetic
from closedloop_ops.local.loop import LocalLoop

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def loop() -> Iterator[LocalLoop]:
    with LocalLoop.start(stack_name="closedloop-spark", parameters={"DataPrepEngine": "glue-spark"}) as running:
        yield running


def read_json(loop: LocalLoop, bucket: str, key: str) -> Any:
    return json.loads(loop.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def test_uploads_are_prepared_on_spark_and_trained_on(loop: LocalLoop) -> None:
    # Given three files uploaded to the data bucket of a stack whose engine is glue-spark
    s3 = loop.client("s3")
    bucket = loop.output("DataBucketName")
    records = list(synthetic.rows(600, seed=41))
    for index in range(3):
        body = synthetic.to_csv(records[index * 200 : (index + 1) * 200]).encode()
        s3.put_object(Bucket=bucket, Key=f"raw/loans/spark/part-{index}.csv", Body=body)
    # When the loop delivers the events, runs the jobs and the pipeline
    loop.settle()
    # Then the Spark job prepared the run: three parts of each kind, every row
    [listed] = s3.list_objects_v2(Bucket=bucket, Prefix="manifests/loans/")["Contents"]
    run_id = read_json(loop, bucket, listed["Key"])["run_id"]
    output = read_json(loop, bucket, f"prepared/loans/{run_id}/manifest.json")
    assert (output["engine"], output["prepared_files"], output["output"]["rows"]) == ("glue-spark", 3, 600)
    assert len(output["output"]["parts"]) == len(output["output"]["parquet"]["parts"]) == 3
    # and route 2 heard the Spark job's end and started training on the CSV parts
    ledger = Ledger(loop.output("LedgerTableName"), loop.client("dynamodb"))
    decisions = ledger.decisions_for(f"run:loans/{run_id}")
    [started] = [d for d in decisions if d.route == "data-prepared" and d.result == "started"]
    assert (started.details["engine"], started.details["data_uri"]) == ("glue-spark", output["output"]["data_uri"])
    # and the pipeline trained on them: the training step read the three parts under one header
    execution = started.details["execution_arn"]
    status = loop.client("sagemaker").describe_pipeline_execution(PipelineExecutionArn=execution)
    assert status["PipelineExecutionStatus"] == "Succeeded"
    # and route 1 recorded which engine it chose
    [chosen] = [d for d in decisions if d.route == "data-arrival" and d.result == "started"]
    assert (chosen.details["engine"], chosen.details["job"]) == ("glue-spark", "closedloop-prep-spark")
