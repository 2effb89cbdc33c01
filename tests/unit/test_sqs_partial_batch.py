"""The partial batch response of the routes behind a queue, as Powertools' BatchProcessor builds it."""

from __future__ import annotations

from typing import Any

import pytest

from closedloop.events.sqs import SqsRecordModel, process_partial_batch
from support.events import sqs_batch


def test_every_record_is_handed_over_in_order_and_a_clean_batch_reports_nothing() -> None:
    # Given a batch of three well-formed records
    event = sqs_batch([{"n": 1}, {"n": 2}, {"n": 3}])
    seen: list[str] = []
    # When it is processed
    response = process_partial_batch(event["Records"], lambda record: seen.append(record.messageId))
    # Then each record reached the handler as the envelope model, and nothing is to be retried
    assert seen == [r["messageId"] for r in event["Records"]]
    assert response == {"batchItemFailures": []}


def test_a_record_whose_handler_raised_is_reported_and_the_others_still_run() -> None:
    # Given three records, the second of which its handler cannot take
    event = sqs_batch([{"n": 1}, {"n": 2}, {"n": 3}])
    failing = event["Records"][1]["messageId"]
    handled: list[str] = []

    def handler(record: SqsRecordModel) -> None:
        if record.messageId == failing:
            raise RuntimeError("cannot take it")
        handled.append(record.messageId)

    # When the batch is processed
    response = process_partial_batch(event["Records"], handler)
    # Then only that record comes back from SQS; the records after it were handled
    assert response == {"batchItemFailures": [{"itemIdentifier": failing}]}
    assert handled == [event["Records"][0]["messageId"], event["Records"][2]["messageId"]]


@pytest.mark.parametrize(
    "breakage",
    [
        lambda r: r.pop("receiptHandle"),
        lambda r: r.update(eventSource="aws:kinesis"),
        lambda r: r["attributes"].pop("ApproximateReceiveCount"),
    ],
    ids=["no-receipt-handle", "not-sqs", "no-receive-count"],
)
def test_a_record_that_is_not_an_sqs_record_is_reported_without_reaching_the_handler(breakage: Any) -> None:
    # Given a batch whose first record's envelope is broken
    event = sqs_batch([{"n": 1}, {"n": 2}])
    breakage(event["Records"][0])
    seen: list[str] = []
    # When it is processed
    response = process_partial_batch(event["Records"], lambda record: seen.append(record.messageId))
    # Then it is reported by its message id, and the handler saw only the good one
    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert seen == [event["Records"][1]["messageId"]]
