"""Route 1 end to end on moto: SQS batch → handler → one preparation job per dataset."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from closedloop.ledger import Ledger
from closedloop.settings import load_settings
from support.events import object_created, sqs_batch
from support.handlers import invoke, load_handler
from support.stack import REGION, Stack


def processing_jobs() -> list[dict[str, Any]]:
    sm = boto3.client("sagemaker", region_name=REGION)
    names = [j["ProcessingJobName"] for j in sm.list_processing_jobs()["ProcessingJobSummaries"]]
    return [sm.describe_processing_job(ProcessingJobName=name) for name in names]


def upload_events(stack: Stack, keys: list[str], dataset_sizes: int = 100) -> list[dict[str, Any]]:
    return [
        object_created(stack.data_bucket, key, size=dataset_sizes, version_id=f"v-{i}") for i, key in enumerate(keys)
    ]


def test_a_batch_starts_one_processing_job_with_the_expected_request(stack: Stack) -> None:
    # Given three uploads of one dataset in one batch
    handler = load_handler("start_data_prep")
    batch = sqs_batch(upload_events(stack, [f"raw/loans/2026-11-27/part-{i}.csv" for i in range(3)]))
    # When the batch is handled
    response = invoke(handler, batch)
    # Then nothing failed and exactly one job runs, with the run's manifest as argument
    assert response == {"batchItemFailures": []}
    jobs = processing_jobs()
    assert len(jobs) == 1
    job = jobs[0]
    assert job["ProcessingJobName"].startswith("closedloop-prep-loans-")
    args = job["AppSpecification"]["ContainerArguments"]
    manifest_uri = args[args.index("--manifest") + 1]
    bucket, key = manifest_uri[5:].split("/", 1)
    manifest = json.loads(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    assert sorted(o["key"] for o in manifest["objects"]) == [f"raw/loans/2026-11-27/part-{i}.csv" for i in range(3)]
    assert all(o["version_id"] for o in manifest["objects"])
    # And the preparation script it runs is the one shipped in the package, content-addressed
    code = job["ProcessingInputs"][0]["S3Input"]["S3Uri"]
    assert code.startswith(f"s3://{stack.settings.artifacts_bucket}/code/prepare/")
    # And the decision is in the ledger
    run_id = manifest["run_id"]
    decisions = Ledger(stack.settings.ledger_table, boto3.client("dynamodb")).decisions_for(f"run:loans/{run_id}")
    assert [(d.action, d.result) for d in decisions] == [("start_data_prep", "started")]
    assert decisions[0].details["objects"] == 3


def test_the_same_batch_twice_starts_one_job(stack: Stack) -> None:
    handler = load_handler("start_data_prep")
    batch = sqs_batch(upload_events(stack, ["raw/loans/a.csv", "raw/loans/b.csv"]))
    invoke(handler, batch)
    # When SQS delivers the same batch again (and again, as new messages with new ids)
    invoke(handler, batch)
    invoke(handler, sqs_batch([json.loads(r["body"]) for r in batch["Records"]]))
    # Then still one job
    assert len(processing_jobs()) == 1


def test_a_file_redelivered_in_another_batch_is_not_prepared_twice(stack: Stack) -> None:
    handler = load_handler("start_data_prep")
    first, second, third = upload_events(stack, ["raw/loans/a.csv", "raw/loans/b.csv", "raw/loans/c.csv"])
    invoke(handler, sqs_batch([first, second]))
    # When a later batch carries one old and one new file
    invoke(handler, sqs_batch([second, third]))
    # Then the second job prepares only the new file
    jobs = processing_jobs()
    assert len(jobs) == 2
    manifests = []
    for job in jobs:
        args = job["AppSpecification"]["ContainerArguments"]
        bucket, key = args[args.index("--manifest") + 1][5:].split("/", 1)
        manifests.append(json.loads(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()))
    assert sorted(len(m["objects"]) for m in manifests) == [1, 2]


def test_a_thousand_uploads_over_three_datasets_start_exactly_three_jobs(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given three datasets with policies (loans ships; two more are declared for this test)
    from closedloop.dataprep import policy as policy_module

    real = policy_module.load_policy
    loans = real("loans")

    def declared(name: str) -> Any:
        return loans.model_copy(update={"dataset": name}) if name in {"loans", "cards", "churn"} else real(name)

    monkeypatch.setattr("closedloop.dataprep.arrival.load_policy", declared)
    monkeypatch.setattr("closedloop.dataprep.service.load_policy", declared)
    monkeypatch.setenv("MODEL_LINES", "loans,cards,churn")  # the stack serves all three lines
    load_settings.cache_clear()
    handler = load_handler("start_data_prep")
    keys = [f"raw/{('loans', 'cards', 'churn')[i % 3]}/2026-11-27/file-{i:04d}.csv" for i in range(1000)]
    # When they arrive as one SQS batch (the batching window's job)
    response = invoke(handler, sqs_batch(upload_events(stack, keys)))
    # Then exactly three jobs, one per dataset, and no failures
    assert response["batchItemFailures"] == []
    names = sorted(job["ProcessingJobName"].rsplit("-", 1)[0] for job in processing_jobs())
    assert names == ["closedloop-prep-cards", "closedloop-prep-churn", "closedloop-prep-loans"]


def test_bad_records_fail_alone_and_good_ones_proceed(stack: Stack) -> None:
    handler = load_handler("start_data_prep")
    good = upload_events(stack, ["raw/loans/good.csv"])[0]
    bad_bodies: list[dict[str, Any] | str] = [
        "this is not json",
        {**good, "detail-type": "Object Deleted"},
        object_created(stack.data_bucket, "raw/loans/../x.csv"),
        object_created(stack.data_bucket, "raw/payroll/x.csv"),
        object_created(stack.data_bucket, "elsewhere/x.csv"),
        object_created("another-bucket", "raw/loans/x.csv"),
    ]
    skipped = [
        object_created(stack.data_bucket, "raw/loans/", size=0),
        object_created(stack.data_bucket, "raw/loans/e.csv", size=0),
    ]
    batch = sqs_batch([good, *bad_bodies, *skipped])
    # When handled
    response = invoke(handler, batch)
    # Then exactly the bad records are batch item failures (SQS redrives them to the DLQ)
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    assert failed == {r["messageId"] for r in batch["Records"][1:7]}
    # And the good one started its job
    jobs = processing_jobs()
    assert len(jobs) == 1
    # And each rejection is in the ledger with its reason
    ledger = Ledger(stack.settings.ledger_table, boto3.client("dynamodb"))
    reasons = {d.reason for record in batch["Records"][1:7] for d in ledger.decisions_for(f"sqs:{record['messageId']}")}
    assert reasons == {
        "malformed event",
        "object key has '.', '..' or empty path segments",
        "no model line 'payroll' is deployed in this stack (ModelLines)",
        "object key is outside raw/",
        "event is for another bucket",
    }


def test_a_crash_after_the_job_started_does_not_start_a_second(stack: Stack) -> None:
    # Given a batch whose job started but whose idempotency record and ledger entries were lost
    handler = load_handler("start_data_prep")
    batch = sqs_batch(upload_events(stack, ["raw/loans/a.csv"]))
    invoke(handler, batch)
    ddb = boto3.client("dynamodb")
    for table in (stack.settings.idempotency_table, stack.settings.ledger_table):
        for item in ddb.scan(TableName=table)["Items"]:
            key = {k: item[k] for k in (("id",) if table == stack.settings.idempotency_table else ("pk", "sk"))}
            ddb.delete_item(TableName=table, Key=key)
    # When SQS redelivers it
    invoke(handler, batch)
    # Then the job is found by its deterministic name, not started again
    assert len(processing_jobs()) == 1
    decisions = Ledger(stack.settings.ledger_table, ddb).decisions_since(datetime.now(UTC) - timedelta(hours=1))
    assert decisions[-1].reason == "found already running"


def test_a_throttled_start_fails_only_that_datasets_records(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import ClientError

    handler = load_handler("start_data_prep")
    sagemaker = handler.arrivals._service._sagemaker

    def throttled(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "CreateProcessingJob")

    batch = sqs_batch(upload_events(stack, ["raw/loans/a.csv", "raw/loans/b.csv"]))
    with monkeypatch.context() as patch:
        patch.setattr(sagemaker, "create_processing_job", throttled)
        response = invoke(handler, batch)
    # Then both records come back for a retry, nothing is marked consumed
    assert {f["itemIdentifier"] for f in response["batchItemFailures"]} == {r["messageId"] for r in batch["Records"]}
    assert processing_jobs() == []
    # And the retry starts the job
    assert invoke(handler, batch)["batchItemFailures"] == []
    assert len(processing_jobs()) == 1


def test_glue_engine_starts_one_run_and_finds_it_again(glue_stack: Stack) -> None:
    handler = load_handler("start_data_prep")
    batch = sqs_batch(upload_events(glue_stack, ["raw/loans/a.csv", "raw/loans/b.jsonl"]))
    assert invoke(handler, batch)["batchItemFailures"] == []
    glue = boto3.client("glue", region_name=REGION)
    runs = glue.get_job_runs(JobName="closedloop-prep")["JobRuns"]
    assert len(runs) == 1
    assert runs[0]["Arguments"]["--engine"] == "glue"
    # When the idempotency record is lost and the batch comes back
    ddb = boto3.client("dynamodb")
    for item in ddb.scan(TableName=glue_stack.settings.idempotency_table)["Items"]:
        ddb.delete_item(TableName=glue_stack.settings.idempotency_table, Key={"id": item["id"]})
    for item in ddb.scan(TableName=glue_stack.settings.ledger_table)["Items"]:
        ddb.delete_item(TableName=glue_stack.settings.ledger_table, Key={"pk": item["pk"], "sk": item["sk"]})
    invoke(handler, batch)
    # Then the run is found by its --run-id argument; no second run
    assert len(glue.get_job_runs(JobName="closedloop-prep")["JobRuns"]) == 1
