"""Pins the S3 → EventBridge extension's object keys to what S3 writes (closedloop_ops.moto_ext.s3_events)."""

from __future__ import annotations

import json
from urllib.parse import unquote_plus

import boto3
import pytest

from closedloop_ops import moto_ext
from support.stack import REGION

KEYS = [
    "raw/loans/applications final 2026.csv",
    "raw/loans/c++ a+b.csv",
    "raw/loans/100% 50%25.csv",
    "raw/loans/Zürich ärende 😀.csv",
    "raw/loans/dt=2026-11-27/a&b;c:d.csv",
]


def test_object_keys_are_url_encoded_as_s3_writes_them() -> None:
    from moto import mock_aws

    moto_ext.install()
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        events = boto3.client("events", region_name=REGION)
        s3.create_bucket(Bucket="data", CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_bucket_versioning(Bucket="data", VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_notification_configuration(
            Bucket="data", NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
        queue = sqs.create_queue(QueueName="q")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="r", EventPattern=json.dumps({"source": ["aws.s3"], "detail-type": ["Object Created"]}))
        events.put_targets(Rule="r", Targets=[{"Id": "q", "Arn": arn}])
        # When objects whose keys need encoding are uploaded
        for key in KEYS:
            s3.put_object(Bucket="data", Key=key, Body=b"a\n")
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    sent = sorted(json.loads(m["Body"])["detail"]["object"]["key"] for m in messages)
    # Then each event carries its key form-encoded (space "+", "%XX" of UTF-8, "/" kept) ...
    assert sent == sorted(
        [
            "raw/loans/applications+final+2026.csv",
            "raw/loans/c%2B%2B+a%2Bb.csv",
            "raw/loans/100%25+50%2525.csv",
            "raw/loans/Z%C3%BCrich+%C3%A4rende+%F0%9F%98%80.csv",
            "raw/loans/dt%3D2026-11-27/a%26b%3Bc%3Ad.csv",
        ]
    )
    # ... which decodes to exactly the key the object has
    assert sorted(unquote_plus(k) for k in sent) == sorted(KEYS)


@pytest.mark.parametrize("key", KEYS)
def test_build_event_round_trips_through_the_route_1_parser(key: str) -> None:
    from closedloop.events.s3 import ObjectCreatedEvent
    from closedloop_ops.moto_ext.s3_events import build_event

    event = build_event("123456789012", REGION, "data", "arn:aws:s3:::data", "s3:ObjectCreated:Put", key, 2, "e", "v1")
    assert ObjectCreatedEvent.model_validate(event).detail.object.decoded_key == key
