"""Parser models against the project's real-format samples and the look-alikes AWS also sends."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from closedloop.events.s3 import ObjectCreatedEvent, ObjectCreatedSqsRecord, look_alike
from support.events import load_event


def test_the_sample_object_created_event_parses() -> None:
    event = ObjectCreatedEvent.model_validate(load_event("s3_object_created"))
    assert event.detail.object.key == "raw/loans/2026-11-27/applications-0001.csv"
    assert event.detail.object.version_id
    assert event.detail.object.size == 48213


def test_the_sqs_sample_carries_the_eventbridge_sample() -> None:
    # Given the SQS batch the data-arrival function receives
    record = load_event("start_data_prep_sqs")["Records"][0]
    # When its record is parsed
    parsed = ObjectCreatedSqsRecord.model_validate(record)
    # Then the body is exactly the EventBridge sample
    assert parsed.body.model_dump(by_alias=True, mode="json") == ObjectCreatedEvent.model_validate(
        load_event("s3_object_created")
    ).model_dump(by_alias=True, mode="json")


def test_unversioned_bucket_events_have_no_version_id() -> None:
    # Given an event from a bucket without versioning (AWS omits version-id)
    event = load_event("s3_object_created")
    del event["detail"]["object"]["version-id"]
    # Then it parses, with the sequencer left to tell versions apart
    parsed = ObjectCreatedEvent.model_validate(event)
    assert parsed.detail.object.version_id is None
    assert parsed.detail.object.sequencer


def test_multipart_uploads_and_lifecycle_requesters_parse() -> None:
    # Given a multipart upload (etag with a part count) without a source IP
    event = load_event("s3_object_created")
    event["detail"]["object"]["etag"] = "4af981f98d22a0b9979da24b259e5e42-12"
    event["detail"]["reason"] = "CompleteMultipartUpload"
    del event["detail"]["source-ip-address"]
    # Then it parses
    assert ObjectCreatedEvent.model_validate(event).detail.reason == "CompleteMultipartUpload"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e.update({"detail-type": "Object Deleted"}),
        lambda e: e.update({"detail-type": "Object Restore Completed"}),
        lambda e: e.update({"source": "aws.sagemaker"}),
        lambda e: e["detail"]["object"].pop("key"),
        lambda e: e["detail"]["object"].update({"size": "big"}),
        lambda e: e["detail"].pop("bucket"),
        lambda e: e.pop("detail"),
    ],
    ids=["deleted", "restore", "other-source", "no-key", "size-not-int", "no-bucket", "no-detail"],
)
def test_look_alikes_and_broken_events_are_rejected(mutate) -> None:  # type: ignore[no-untyped-def]
    event = load_event("s3_object_created")
    mutate(event)
    with pytest.raises(ValidationError):
        ObjectCreatedEvent.model_validate(event)


def test_a_classic_s3_notification_is_not_an_eventbridge_event() -> None:
    # The classic `Records[]` notification format must not pass for an EventBridge event.
    classic = {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}]}
    with pytest.raises(ValidationError):
        ObjectCreatedEvent.model_validate(classic)


def test_numbers_as_strings_are_coerced_only_where_lossless() -> None:
    event = load_event("s3_object_created")
    event["detail"]["object"]["size"] = "48213"
    assert ObjectCreatedEvent.model_validate_json(json.dumps(event)).detail.object.size == 48213


def test_a_key_whose_escapes_are_not_utf8_is_a_malformed_event() -> None:
    # Given a key with a %XX escape that does not decode to UTF-8 (S3 encodes UTF-8 bytes)
    event = load_event("s3_object_created")
    event["detail"]["object"]["key"] = "raw/loans/%C3.csv"
    # Then the model refuses it, saying where and why without the value
    with pytest.raises(ValidationError) as raised:
        ObjectCreatedEvent.model_validate(event)
    [error] = raised.value.errors(include_input=False)
    assert error["loc"] == ("detail", "object", "key") and "not URL-encoded UTF-8" in error["msg"]


def test_the_key_is_kept_as_sent_and_decoded_on_request() -> None:
    event = load_event("s3_object_created")
    event["detail"]["object"]["key"] = "raw/loans/red+flower%2B%25.csv"
    parsed = ObjectCreatedEvent.model_validate(event).detail.object
    assert (parsed.key, parsed.decoded_key) == ("raw/loans/red+flower%2B%25.csv", "raw/loans/red flower+%.csv")


@pytest.mark.parametrize(
    ("document", "name"),
    [
        (
            {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}]},
            "a classic S3 event notification (Records[] with eventSource aws:s3)",
        ),
        ({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"}, "an S3 test event (s3:TestEvent)"),
        (load_event("s3_object_created"), "an EventBridge event"),
        ({"Records": [{"messageId": "m"}]}, None),
        ("not json", None),
    ],
    ids=["classic", "test-event", "eventbridge", "other", "not-json"],
)
def test_look_alikes_are_named(document: object, name: str | None) -> None:
    assert look_alike(document if not isinstance(document, dict) else json.dumps(document)) == name
    assert look_alike(document) == name
