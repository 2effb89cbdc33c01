"""What the fuzzing found, kept as plain tests so it stays fixed (docs/reliability.md, "Found and fixed")."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest

from closedloop.errors import InvalidEventError
from support.events import object_created, sqs_batch
from support.handlers import FakeLambdaContext, load_handler
from support.stack import REGION, Stack
from support.training import create_pipeline, glue_event, prepared_run, start_glue_run
from support.worlds import ledger, pipeline_executions, processing_jobs


@pytest.mark.parametrize("field", ["version-id", "etag", "sequencer"])
def test_an_upload_with_a_version_id_etag_or_sequencer_longer_than_s3_writes_starts_nothing(
    stack: Stack, field: str
) -> None:
    # Given an upload event whose object identity could not be recorded in the ledger (keys: 2048 bytes)
    handler = load_handler("start_data_prep")
    event = object_created(stack.data_bucket, "raw/loans/long/a.csv", version_id="v-1")
    event["detail"]["object"][field] = "x" * 5000
    batch = sqs_batch([event])
    # When it is handled
    response = handler.lambda_handler(batch, FakeLambdaContext())
    # Then it is refused before anything starts (it once started a job, then failed to mark its object taken)
    assert response == {"batchItemFailures": [{"itemIdentifier": batch["Records"][0]["messageId"]}]}
    assert processing_jobs(stack) == []
    s3 = boto3.client("s3", region_name=REGION)
    assert s3.list_objects_v2(Bucket=stack.data_bucket, Prefix="manifests/")["KeyCount"] == 0
    [rejected] = [d for d in ledger(stack).decisions_since(datetime(2000, 1, 1, tzinfo=UTC)) if d.result == "rejected"]
    assert rejected.reason == f"object {field} is longer than S3 writes"


def test_a_glue_run_glue_does_not_know_is_an_invalid_event(stack: Stack) -> None:
    # Given the stack's Glue job, and an event naming a run id it never had
    create_pipeline()
    handler = load_handler("start_training")
    start_glue_run(prepared_run(stack))
    event = glue_event("jr_0000000000000000000000000000000000000000000000000000000000000000")
    # When it is handled, it is the documented invalid event (it was an AWS error no retry could help)
    with pytest.raises(InvalidEventError, match="the Glue job run does not exist"):
        handler.lambda_handler(event, FakeLambdaContext())
    assert pipeline_executions(stack) == []
