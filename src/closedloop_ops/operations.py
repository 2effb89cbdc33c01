"""What an operator does with a closedloop stack: read the audit, inspect and redrive dead letters.

Library functions first (the command line and the notebook call the same ones); each takes a
`StackRef`, so it works against a deployed stack and the local loop alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from closedloop.ledger import Ledger, RecordedDecision
from closedloop_ops.cli_errors import CliError
from closedloop_ops.stackref import StackRef

# -- audit ---------------------------------------------------------------------------------------


def audit(stack: StackRef, since: datetime, until: datetime | None = None) -> list[RecordedDecision]:
    """Every automated decision the ledger recorded in [since, until)."""
    ledger = Ledger(stack.output("LedgerTableName"), stack.client("dynamodb"))
    return ledger.decisions_since(since.astimezone(UTC), until.astimezone(UTC) if until else None)


def decisions_for(stack: StackRef, business_key: str) -> list[RecordedDecision]:
    return Ledger(stack.output("LedgerTableName"), stack.client("dynamodb")).decisions_for(business_key)


# -- dead letters --------------------------------------------------------------------------------


@dataclass
class DeadLetter:
    queue: str
    message_id: str
    kind: str  # "eventbridge-target" | "lambda-destination" | "sqs-redrive"
    event_source: str
    detail_type: str
    reason: str
    body: dict[str, Any] = field(repr=False, default_factory=dict)
    attributes: dict[str, str] = field(repr=False, default_factory=dict)

    @property
    def subject(self) -> str:
        """What the event is about: the object key, version, execution, job, endpoint or alarm it names."""
        return subject_of(self.body)


SUBJECT_FIELDS = (
    "ModelPackageArn",
    "pipelineExecutionArn",
    "ProcessingJobName",
    "EndpointName",
    "alarmName",
)


def subject_of(body: Any) -> str:
    """The subject of an EventBridge event (inside a Lambda destination record, if it is one), or ""."""
    if isinstance(body, dict) and isinstance(body.get("requestPayload"), dict):
        body = body["requestPayload"]
    detail = body.get("detail") if isinstance(body, dict) else None
    if not isinstance(detail, dict):
        return ""
    obj, bucket = detail.get("object"), detail.get("bucket")
    if isinstance(obj, dict) and isinstance(bucket, dict):
        version = f" (version {obj['version-id']})" if obj.get("version-id") else ""
        return f"s3://{bucket.get('name', '?')}/{obj.get('key', '?')}{version}"
    if detail.get("jobName"):
        return f"{detail['jobName']} run {detail.get('jobRunId', '?')}"
    return next((str(detail[name]) for name in SUBJECT_FIELDS if detail.get(name)), "")


@dataclass
class QueueDepth:
    queue: str
    url: str
    messages: int
    in_flight: int


def dead_letter_queues(stack: StackRef) -> dict[str, str]:
    """The stack's DLQs: output name (without `Url`) → queue URL."""
    return {name.removesuffix("Url"): url for name, url in stack.outputs.items() if name.endswith("DlqUrl")}


def dlq_depths(stack: StackRef) -> list[QueueDepth]:
    sqs = stack.client("sqs")
    depths = []
    for name, url in sorted(dead_letter_queues(stack).items()):
        attributes = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        depths.append(
            QueueDepth(
                name,
                url,
                int(attributes["ApproximateNumberOfMessages"]),
                int(attributes["ApproximateNumberOfMessagesNotVisible"]),
            )
        )
    return depths


def _queue_url(stack: StackRef, queue: str) -> str:
    queues = dead_letter_queues(stack)
    if queue in queues:
        return queues[queue]
    matches = [url for name, url in queues.items() if name.lower().startswith(queue.lower())]
    if len(matches) == 1:
        return matches[0]
    raise CliError(f"no dead-letter queue {queue!r}: choose one of {', '.join(sorted(queues))}")


def _classify(stack: StackRef, queue: str, message: dict[str, Any]) -> DeadLetter:
    attributes = {k: v.get("StringValue", "") for k, v in message.get("MessageAttributes", {}).items()}
    try:
        body = json.loads(message["Body"])
    except ValueError:
        body = {"raw": message["Body"][:2000]}
    if isinstance(body, dict) and "requestContext" in body and "requestPayload" in body:
        payload = body.get("requestPayload") or {}
        response = body.get("responsePayload") or {}
        context = body["requestContext"]
        attempts = context.get("approximateInvokeCount", "?")
        reason = (
            f"{response.get('errorType', 'Error')}: {response.get('errorMessage', '')} "
            f"({context.get('condition', '')}, {attempts} attempts)"
        )
        return DeadLetter(
            queue,
            message["MessageId"],
            "lambda-destination",
            str(payload.get("source", "")),
            str(payload.get("detail-type", "")),
            reason.strip(),
            body,
            attributes,
        )
    if "ERROR_CODE" in attributes or "RULE_ARN" in attributes:
        reason = f"{attributes.get('ERROR_CODE', '')}: {attributes.get('ERROR_MESSAGE', '')}".strip(": ")
        return DeadLetter(
            queue,
            message["MessageId"],
            "eventbridge-target",
            str(body.get("source", "")),
            str(body.get("detail-type", "")),
            reason or "target delivery failed",
            body,
            attributes,
        )
    if "closedloop-reason" in attributes:  # a handler that gave up moved it here itself, with why
        reason = f"{attributes.get('closedloop-error', 'Error')}: {attributes['closedloop-reason']}"
    else:
        decisions = decisions_for(stack, f"sqs:{message['MessageId']}")
        reason = (
            decisions[-1].reason if decisions else "failed on every delivery (no ledger entry: see the function's logs)"
        )
    return DeadLetter(
        queue,
        message["MessageId"],
        "sqs-redrive",
        str(body.get("source", "")),
        str(body.get("detail-type", "")),
        reason,
        body,
        attributes,
    )


def peek(stack: StackRef, queue: str, limit: int = 10) -> list[DeadLetter]:
    """Read up to `limit` dead letters without removing them (they become visible again at once)."""
    url = _queue_url(stack, queue)
    sqs = stack.client("sqs")
    found: dict[str, DeadLetter] = {}
    for _ in range(max(1, limit // 10 + 1)):
        messages = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=min(10, limit),
            VisibilityTimeout=0,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
        ).get("Messages", [])
        for message in messages:
            found.setdefault(message["MessageId"], _classify(stack, queue, message))
        if not messages or len(found) >= limit:
            break
    return list(found.values())[:limit]


@dataclass
class RedriveResult:
    queue: str
    redriven: int
    failed: list[str]


def _source_queue(stack: StackRef, dlq_url: str) -> str | None:
    sqs = stack.client("sqs")
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for name, url in stack.outputs.items():
        if not (name.endswith("QueueUrl") and isinstance(url, str)) or url == dlq_url:
            continue
        policy = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"].get(
            "RedrivePolicy"
        )
        if policy and json.loads(policy).get("deadLetterTargetArn") == dlq_arn:
            return str(url)
    return None


def redrive(stack: StackRef, queue: str, limit: int = 100) -> RedriveResult:
    """Send dead letters back where they were going; a handled event is a no-op there (idempotency).

    - a Lambda destination record → the function is invoked again, asynchronously, with its payload;
    - an EventBridge target failure → delivered again to the target it failed to reach;
    - a queue's redrive → sent back to the queue it came from.
    """
    url = _queue_url(stack, queue)
    sqs = stack.client("sqs")
    lambda_client = stack.client("lambda")
    source = None
    redriven, failed = 0, list[str]()
    while redriven + len(failed) < limit:
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30, MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            break
        for message in messages:
            letter = _classify(stack, queue, message)
            try:
                if letter.kind == "lambda-destination":
                    function = letter.body["requestContext"]["functionArn"].rsplit(":$LATEST", 1)[0]
                    lambda_client.invoke(
                        FunctionName=function,
                        InvocationType="Event",
                        Payload=json.dumps(letter.body["requestPayload"]).encode(),
                    )
                elif letter.kind == "eventbridge-target":
                    target = letter.attributes.get("TARGET_ARN", "")
                    if ":lambda:" in target:
                        lambda_client.invoke(
                            FunctionName=target, InvocationType="Event", Payload=message["Body"].encode()
                        )
                    elif ":sqs:" in target:
                        sqs.send_message(
                            QueueUrl=sqs.get_queue_url(QueueName=target.rsplit(":", 1)[1])["QueueUrl"],
                            MessageBody=message["Body"],
                        )
                    else:
                        raise CliError(f"cannot redrive to target {target or '(unknown)'}")
                else:
                    source = source or _source_queue(stack, url)
                    if source is None:
                        raise CliError("no source queue found for this dead-letter queue")
                    sqs.send_message(QueueUrl=source, MessageBody=message["Body"])
            except CliError as exc:
                failed.append(f"{message['MessageId']}: {exc}")
                sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
                continue
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            redriven += 1
    return RedriveResult(queue=queue, redriven=redriven, failed=failed)
