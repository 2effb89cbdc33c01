"""Route 1 on moto with the inputs nobody on the project wrote: unversioned objects, keys S3 has to
encode, S3's other event formats, empty files and folder markers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from closedloop.errors import InvalidEventError
from closedloop.prep import prepare
from closedloop_ops import synthetic
from support.events import object_created, sqs_batch
from support.handlers import FakeLambdaContext, invoke, load_handler
from support.stack import REGION, Stack
from support.worlds import ledger, processing_jobs

EXPECTED = "start_data_prep expects an SQS batch whose records carry EventBridge `Object Created` events"


def classic_notification(bucket: str, key: str) -> dict[str, Any]:
    """S3's own `Records[]` notification (eventVersion 2.1), shaped like the S3 User Guide's example."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": REGION,
                "eventTime": "2026-11-27T09:14:03.000Z",
                "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
                "requestParameters": {"sourceIPAddress": "203.0.113.24"},
                "responseElements": {
                    "x-amz-request-id": "C3D13FE58DE4C810",
                    "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD",
                },
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "raw-uploads",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": {
                        "key": key,
                        "size": 1024,
                        "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                        "versionId": "v1",
                        "sequencer": "0055AED6DCD90281E5",
                    },
                },
            }
        ]
    }


S3_TEST_EVENT = {
    "Service": "Amazon S3",
    "Event": "s3:TestEvent",
    "Time": "2026-11-27T09:14:03.089Z",
    "Bucket": "closedloop-test-data",
    "RequestId": "5582815E1AEA5ADF",
    "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
}


def manifests(stack: Stack) -> list[dict[str, Any]]:
    s3 = boto3.client("s3", region_name=REGION)
    listed = s3.list_objects_v2(Bucket=stack.data_bucket, Prefix="manifests/").get("Contents", [])
    return [json.loads(s3.get_object(Bucket=stack.data_bucket, Key=o["Key"])["Body"].read()) for o in listed]


def decisions(stack: Stack) -> list[Any]:
    return ledger(stack).decisions_since(datetime(2000, 1, 1, tzinfo=UTC))


# -- item: unversioned objects ----------------------------------------------------------------------


@pytest.mark.parametrize("version_id", [None, "null"], ids=["no-version-id", "null-version-id"])
def test_an_upload_without_a_version_id_is_refused_with_what_to_fix(stack: Stack, version_id: str | None) -> None:
    # Given an upload event of an unversioned bucket (no `version-id`, or S3's literal "null")
    handler = load_handler("start_data_prep")
    event = object_created(stack.data_bucket, "raw/loans/unversioned.csv", version_id="v1")
    if version_id is None:
        del event["detail"]["object"]["version-id"]
    else:
        event["detail"]["object"]["version-id"] = version_id
    batch = sqs_batch([event])
    # When it is handled
    response = invoke(handler, batch)
    # Then the record fails (SQS moves it to the DLQ after its last receive) and nothing started
    message_id = batch["Records"][0]["messageId"]
    assert response == {"batchItemFailures": [{"itemIdentifier": message_id}]}
    assert processing_jobs(stack) == [] and manifests(stack) == []
    # And the ledger says why, and what to fix
    [decision] = ledger(stack).decisions_for(f"sqs:{message_id}")
    assert (decision.action, decision.result) == ("validate_event", "rejected")
    assert "no version id" in decision.reason
    assert decision.details["fix"].startswith("enable versioning on the data bucket")


# -- item: keys S3 encodes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "applications final 2026.csv",
        "c++ a+b.csv",
        "100% 50%25.csv",
        "Zürich ärende 😀.csv",
        "dt=2026-11-27 a&b;c:d.csv",
    ],
    ids=["spaces", "plus", "percent", "unicode", "reserved"],
)
def test_keys_with_spaces_plus_percent_or_unicode_reach_the_manifest_and_the_job_exactly(
    stack: Stack, name: str
) -> None:
    # Given a file uploaded under a key S3 has to URL-encode in its event
    key = f"raw/loans/2026-11-27/{name}"
    s3 = boto3.client("s3", region_name=REGION)
    rows = list(synthetic.rows(30, seed=5))
    put = s3.put_object(Bucket=stack.data_bucket, Key=key, Body=synthetic.to_csv(rows).encode())
    event = object_created(stack.data_bucket, key, version_id=put["VersionId"], etag=put["ETag"].strip('"'))
    assert event["detail"]["object"]["key"] != key  # what S3 sends is the encoded key
    # When the handler gets the event S3 sends for it
    response = invoke(load_handler("start_data_prep"), sqs_batch([event]))
    # Then one run starts, and its manifest names the real key and version
    assert response == {"batchItemFailures": []}
    [manifest] = manifests(stack)
    assert [(o["key"], o["version_id"]) for o in manifest["objects"]] == [(key, put["VersionId"])]
    # And the object is taken under its real identity (a redelivery is recognised)
    assert ledger(stack).consumed_objects([f"{stack.data_bucket}/{key}#{put['VersionId']}"])
    # And the preparation job reads the real object from that manifest
    manifest_uri = f"s3://{stack.data_bucket}/manifests/loans/{manifest['run_id']}/input.json"
    output = prepare.run(manifest_uri, s3, boto3.client("secretsmanager", region_name=REGION))
    assert (output["prepared_files"], output["quarantined_files"], output["output"]["rows"]) == (1, 0, 30)
    assert [i["key"] for i in output["inputs"]] == [key]


# -- item: not an SQS batch, or a record that is another S3 format ----------------------------------


@pytest.mark.parametrize("shape", ["classic-notification", "eventbridge-event", "records-without-message-ids"])
def test_an_invocation_that_is_not_an_sqs_batch_is_a_clear_error_not_a_crash_or_a_silent_success(
    stack: Stack, shape: str
) -> None:
    # Given an event the function was never meant to get directly
    event = {
        "classic-notification": classic_notification(stack.data_bucket, "raw/loans/a.csv"),
        "eventbridge-event": object_created(stack.data_bucket, "raw/loans/a.csv"),
        "records-without-message-ids": {"Records": [{"body": "{}"}]},
    }[shape]
    handler = load_handler("start_data_prep")
    # When it is invoked, then the invocation fails with the structured error naming what it expects
    with pytest.raises(InvalidEventError) as raised:
        handler.lambda_handler(event, FakeLambdaContext())
    error = raised.value.as_dict()
    assert error["error"] == "InvalidEvent" and error["message"] == EXPECTED
    assert (
        error["received"]
        == {
            "classic-notification": "a classic S3 event notification (Records[] with eventSource aws:s3)",
            "eventbridge-event": "an EventBridge event",
            "records-without-message-ids": "an event of another shape",
        }[shape]
    )
    # And nothing started
    assert processing_jobs(stack) == [] and manifests(stack) == []


def test_a_record_carrying_a_classic_notification_or_a_test_event_is_rejected_with_its_reason(stack: Stack) -> None:
    # Given a queue that also gets the bucket's classic notifications (and the test event S3 sends first)
    good = object_created(stack.data_bucket, "raw/loans/good.csv")
    batch = sqs_batch([good, classic_notification(stack.data_bucket, "raw/loans/a.csv"), S3_TEST_EVENT])
    # When the batch is handled
    response = invoke(load_handler("start_data_prep"), batch)
    # Then exactly those two records fail, and the good one starts its run
    classic_id, test_id = (r["messageId"] for r in batch["Records"][1:])
    assert {f["itemIdentifier"] for f in response["batchItemFailures"]} == {classic_id, test_id}
    assert len(processing_jobs(stack)) == 1
    # And the ledger names each format and what to fix
    [classic] = ledger(stack).decisions_for(f"sqs:{classic_id}")
    [test_event] = ledger(stack).decisions_for(f"sqs:{test_id}")
    assert classic.reason == "record body is a classic S3 event notification, not an EventBridge Object Created event"
    assert (
        test_event.reason == "record body is an S3 test event (s3:TestEvent), not an EventBridge Object Created event"
    )
    assert "EventBridge" in classic.details["fix"]


# -- item: empty files and other skips ---------------------------------------------------------------


def test_an_empty_upload_is_quarantined_with_a_report_and_a_ledger_decision(stack: Stack) -> None:
    # Given a 0-byte upload of a declared dataset, next to a good one
    s3 = boto3.client("s3", region_name=REGION)
    put = s3.put_object(Bucket=stack.data_bucket, Key="raw/loans/2026-11-27/empty file.csv", Body=b"")
    empty = object_created(
        stack.data_bucket, "raw/loans/2026-11-27/empty file.csv", size=0, version_id=put["VersionId"]
    )
    good = object_created(stack.data_bucket, "raw/loans/2026-11-27/good.csv")
    batch = sqs_batch([empty, good])
    # When the batch is handled (twice: SQS delivers at least once)
    handler = load_handler("start_data_prep")
    assert invoke(handler, batch) == {"batchItemFailures": []}
    assert invoke(handler, batch) == {"batchItemFailures": []}
    # Then the empty file is in no run: the one run prepares the good file only
    [manifest] = manifests(stack)
    assert [o["key"] for o in manifest["objects"]] == ["raw/loans/2026-11-27/good.csv"]
    # And it is in the quarantine bucket, once, with a report of counts and reasons
    listed = s3.list_objects_v2(Bucket=stack.settings.quarantine_bucket)["Contents"]
    keys = sorted(o["Key"] for o in listed)
    assert len(keys) == 2 and keys[0].startswith("loans/arrival/") and keys[0].endswith("/empty file.csv")
    assert keys[1] == keys[0] + ".report.json"
    report = json.loads(s3.get_object(Bucket=stack.settings.quarantine_bucket, Key=keys[1])["Body"].read())
    assert report["reason"] == "empty file" and report["details"] == {"bytes": 0, "stage": "arrival"}
    assert report["source"]["key"] == "raw/loans/2026-11-27/empty file.csv"
    assert report["source"]["version_id"] == put["VersionId"]
    # And the ledger (what `closedloop audit` lists) holds the decision, with no value in it
    [decision] = [d for d in decisions(stack) if d.action == "quarantine_raw_object"]
    assert (decision.result, decision.reason) == ("quarantined", "empty file")
    assert decision.details == {
        "dataset": "loans",
        "bytes": 0,
        "quarantine": f"s3://{stack.settings.quarantine_bucket}/{keys[0].rsplit('/', 1)[0]}/",
    }


def test_a_folder_marker_is_ignored_and_a_slash_key_holding_data_is_refused(stack: Stack) -> None:
    # Given the console's "Create folder" marker, and an object whose key ends in "/" but holds bytes
    marker = object_created(stack.data_bucket, "raw/loans/2026-11-27/", size=0)
    not_a_marker = object_created(stack.data_bucket, "raw/loans/2026-11-28/", size=12)
    batch = sqs_batch([marker, not_a_marker])
    # When handled
    response = invoke(load_handler("start_data_prep"), batch)
    # Then the marker is ignored (no failure, no decision: there is nothing in it)
    marker_id, data_id = (r["messageId"] for r in batch["Records"])
    assert response == {"batchItemFailures": [{"itemIdentifier": data_id}]}
    assert ledger(stack).decisions_for(f"sqs:{marker_id}") == []
    # And the object with data is refused with its reason, not silently skipped
    [refused] = ledger(stack).decisions_for(f"sqs:{data_id}")
    assert refused.reason == "object key ends with '/' but the object holds data"
    assert processing_jobs(stack) == []
