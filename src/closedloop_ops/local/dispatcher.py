"""Deliver queued events to the real handlers, in-process, the way Lambda would.

Two delivery paths, both from the template:
* SQS event source mappings (route 1's queue): records are handed over in batches in Lambda's SQS
  event format; with `ReportBatchItemFailures` only the failed records stay on the queue; a record
  that keeps failing moves to the queue's DLQ by its redrive policy (moto applies maxReceiveCount).
* EventBridge → Lambda (asynchronous invocation): each rule target is a per-function queue
  locally; a failed invocation is retried `MaximumRetryAttempts` times, then a Lambda destination
  record (the format AWS writes) goes to the function's on-failure destination.

Locally the batching window is "whatever is queued when the dispatcher looks", and retries run at
once rather than after backoff; everything else — the handler code, the environment the template
gives it, the identity of its role — is what the function gets on AWS.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

from closedloop_ops.local.provision import LocalFunction, LocalSchedule, LocalStack

MAX_SQS_RECEIVE = 10


@dataclass
class Invocation:
    """One handler invocation, for the timeline and the tests."""

    function: str
    started_at: datetime
    duration_ms: float
    trigger: str
    records: int
    error: str | None = None
    result: Any = None


def point_logger(observability: Any, stream: Any) -> Any:
    """Send the shared Powertools Logger's output to `stream`; returns where it went before.

    (Assigned, not `setStream`: that flushes the old stream, which may be a closed log file.)
    """
    handler = observability.logger.registered_handler if observability is not None else None
    if not isinstance(handler, logging.StreamHandler) or stream is None:
        return None
    previous = handler.stream
    handler.stream = stream
    return previous


LOG_RECORD_KEYS = frozenset(
    {"level", "location", "message", "timestamp", "service", "sampling_rate", "xray_trace_id", "cold_start"}
)


class FunctionLines:
    """A function's stdout as the local loop shows it: each structured log line names its own function.

    On Lambda every function is its own process with its own Logger; here the handlers share one
    process and so one Logger, built with the first function's service name. Each line is re-tagged
    with the service of the function that wrote it. `readable` turns the JSON lines into one short
    line each (time, function, level, message, keys) for a terminal.
    """

    def __init__(self, target: Any, service: str, *, readable: bool) -> None:
        self._target = target
        self._service = service
        self._readable = readable
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            shown = self._line(line)
            if shown is not None:
                self._target.write(shown + "\n")
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self.write("\n")
        self._target.flush()

    def _line(self, line: str) -> str | None:
        try:
            record = json.loads(line)
        except ValueError:
            return line
        if isinstance(record, dict) and "_aws" in record:  # an EMF metrics blob
            return self._metrics(record, line)
        if not isinstance(record, dict) or "level" not in record or "message" not in record:
            return line
        record["service"] = self._service
        if not self._readable:
            return json.dumps(record, default=str)
        keys = " ".join(
            f"{k}={v}" for k, v in record.items() if k not in LOG_RECORD_KEYS and not k.startswith("function_")
        )
        when = str(record.get("timestamp", ""))[11:23]
        return f"{when:<12} {self._service:<18} {record['level']:<7} {record['message']} {keys}".rstrip()

    def _metrics(self, record: dict[str, Any], line: str) -> str | None:
        if not self._readable:
            return line
        names = [m["Name"] for d in record["_aws"].get("CloudWatchMetrics", []) for m in d.get("Metrics", [])]
        figures = " ".join(f"{name}={record.get(name)}" for name in names)
        return f"{'':12} {self._service:<18} METRIC  {figures}" if figures else None


class LambdaContext:
    """The context object a handler receives."""

    def __init__(self, function: LocalFunction) -> None:
        self.function_name = function.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = function.arn
        self.memory_limit_in_mb = 512
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function.name}"
        self.log_stream_name = f"local/{self.aws_request_id}"
        self._deadline = time.monotonic() + function.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Run with exactly these extra environment variables set (restored afterwards)."""
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@dataclass
class FunctionRuntime:
    """A function's handler module, loaded with the function's environment and role credentials."""

    function: LocalFunction
    environment: dict[str, str]
    module: ModuleType | None = None
    handler: Callable[[dict[str, Any], Any], Any] | None = None

    def load(self) -> None:
        from closedloop import aws
        from closedloop.settings import load_settings

        module_file, _, attribute = self.function.handler.rpartition(".")
        path = self.function.code_dir / f"{module_file.replace('.', '/')}.py"
        name = f"closedloop_local_{self.function.code_dir.name}"
        with environment(self.environment):
            load_settings.cache_clear()
            aws.reset_clients()
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise RuntimeError(f"cannot load {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            load_settings.cache_clear()
            aws.reset_clients()
        self.module = module
        self.handler = getattr(module, attribute)

    def invoke(self, event: dict[str, Any]) -> Any:
        if self.handler is None:
            self.load()
        assert self.handler is not None
        with environment(self.environment):
            return self.handler(event, LambdaContext(self.function))


@dataclass
class Dispatcher:
    """Polls the stack's queues and invokes the handlers until nothing is left to deliver."""

    stack: LocalStack
    base_environment: dict[str, str]
    on_invocation: Callable[[Invocation], None] | None = None
    log_stream: Any = None  # where the handlers' stdout (structured logs, EMF metrics) goes; None: stdout
    chaos: Any = None  # a closedloop_ops.local.chaos.Chaos, for the bad-day scenario
    runtimes: dict[str, FunctionRuntime] = field(default_factory=dict)
    invocations: list[Invocation] = field(default_factory=list)

    def runtime(self, logical_id: str) -> FunctionRuntime:
        if logical_id not in self.runtimes:
            function = self.stack.functions[logical_id]
            credentials = self._role_credentials(function)
            env = {
                **self.base_environment,
                **function.environment,
                **credentials,
                "AWS_LAMBDA_FUNCTION_NAME": function.name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
                "AWS_REGION": self.stack.region,
                "AWS_DEFAULT_REGION": self.stack.region,
                "AWS_ENDPOINT_URL": self.stack.endpoint_url,
            }
            runtime = FunctionRuntime(function=function, environment=env)
            with self._output(function):
                runtime.load()
            self.runtimes[logical_id] = runtime
        return self.runtimes[logical_id]

    def _role_credentials(self, function: LocalFunction) -> dict[str, str]:
        """Each function calls AWS as its own role (so `LastModifiedBy` names the right identity)."""
        sts = self.stack.client("sts")
        creds = sts.assume_role(RoleArn=function.role_arn, RoleSessionName=function.name[:64])["Credentials"]
        return {
            "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
            "AWS_SESSION_TOKEN": creds["SessionToken"],
        }

    @contextlib.contextmanager
    def _output(self, function: LocalFunction) -> Iterator[None]:
        """Handlers print their logs and metrics as Lambda would (to stdout): send them to `log_stream`.

        Lines go through `FunctionLines`, tagged with the function's service; on a terminal (no
        `log_stream`) as one readable line each.
        """
        import warnings

        # Only once a handler has built it: importing it here would build it with this process's
        # environment instead of the function's (its metrics namespace comes from there).
        observability = sys.modules.get("closedloop.observability")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No application metrics to publish")
            service = function.environment.get("POWERTOOLS_SERVICE_NAME") or function.logical_id
            target = FunctionLines(
                self.log_stream if self.log_stream is not None else sys.stdout,
                service,
                readable=self.log_stream is None,
            )
            # The shared Logger keeps the stream it was built with: point it at this loop's sink.
            previous = point_logger(observability, target)
            try:
                with contextlib.redirect_stdout(target):  # type: ignore[type-var]
                    yield
            finally:
                target.flush()
                point_logger(observability, previous)

    # -- delivery ---------------------------------------------------------------------------

    def pump(self) -> int:
        """One pass over every queue; returns how many messages were delivered."""
        delivered = 0
        for mapping in self.stack.mappings:
            delivered += self._deliver_sqs_batch(
                mapping.function,
                mapping.queue_url,
                mapping.queue_arn,
                mapping.batch_size,
                mapping.report_batch_item_failures,
            )
        for function in self.stack.functions.values():
            delivered += self._deliver_async(function)
        return delivered

    def run_until_idle(self, max_passes: int = 50, between: Callable[[], int] | None = None) -> int:
        """Pump until a pass delivers nothing (and `between`, e.g. a job runner, has no work)."""
        total = 0
        for _ in range(max_passes):
            delivered = self.pump()
            worked = between() if between else 0
            total += delivered
            if not delivered and not worked:
                return total
        raise RuntimeError(f"events still flowing after {max_passes} passes")

    def fire_schedule(self, schedule: LocalSchedule, at: datetime | None = None) -> Invocation:
        """Invoke a schedule's target as EventBridge Scheduler does: its Input with the context
        attributes filled in, retried per its RetryPolicy, then sent to its dead-letter queue."""
        moment = (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        execution_id = uuid.uuid4().hex[:16]
        function = self.stack.functions[schedule.function]
        attempts = 1 + min(schedule.maximum_retry_attempts, 2)  # locally: retried at once, twice at most
        invocation: Invocation | None = None
        for attempt in range(1, attempts + 1):
            text = (
                schedule.input.replace("<aws.scheduler.schedule-arn>", schedule.arn)
                .replace("<aws.scheduler.scheduled-time>", moment)
                .replace("<aws.scheduler.execution-id>", execution_id)
                .replace("<aws.scheduler.attempt-number>", str(attempt))
            )
            invocation = self._invoke(function, json.loads(text), f"schedule {schedule.name}", 1)
            if invocation.error is None:
                return invocation
        assert invocation is not None
        if schedule.dead_letter_arn:
            sqs = self.stack.client("sqs")
            url = sqs.get_queue_url(QueueName=schedule.dead_letter_arn.rsplit(":", 1)[1])["QueueUrl"]
            sqs.send_message(
                QueueUrl=url,
                MessageBody=text,
                MessageAttributes={
                    "ERROR_CODE": {"DataType": "String", "StringValue": "Lambda.FunctionError"},
                    "ERROR_MESSAGE": {"DataType": "String", "StringValue": (invocation.error or "")[:1000]},
                    "TARGET_ARN": {"DataType": "String", "StringValue": function.arn},
                    "EXECUTION_ID": {"DataType": "String", "StringValue": execution_id},
                },
            )
        return invocation

    def invoke_async(self, logical_id: str, event: dict[str, Any], trigger: str) -> None:
        """Invoke a function as EventBridge Scheduler or a rule would (retries, then on-failure)."""
        function = self.stack.functions[logical_id]
        self._invoke_with_retries(function, event, trigger)

    def _receive(self, queue_url: str, limit: int) -> list[dict[str, Any]]:
        sqs = self.stack.client("sqs")
        messages: list[dict[str, Any]] = []
        while len(messages) < limit:
            response = sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=min(MAX_SQS_RECEIVE, limit - len(messages)),
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            batch = response.get("Messages", [])
            if not batch:
                break
            messages.extend(batch)
        if self.chaos is not None and messages:
            messages = self.chaos.on_receive(sqs, queue_url, messages)
        return messages

    def _deliver_sqs_batch(
        self, logical_id: str, queue_url: str, queue_arn: str, batch_size: int, partial: bool
    ) -> int:
        messages = self._receive(queue_url, batch_size)
        if not messages:
            return 0
        event = {"Records": [self._sqs_record(m, queue_arn) for m in messages]}
        sqs = self.stack.client("sqs")
        invocation = self._invoke(
            self.stack.functions[logical_id], event, f"SQS batch of {len(messages)}", len(messages)
        )
        failed: set[str] = set()
        if invocation.error is not None:
            failed = {m["MessageId"] for m in messages}
        elif partial and isinstance(invocation.result, dict):
            failed = {f["itemIdentifier"] for f in invocation.result.get("batchItemFailures", [])}
        for message in messages:
            if message["MessageId"] in failed:
                sqs.change_message_visibility(
                    QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)

    def _deliver_async(self, function: LocalFunction) -> int:
        messages = self._receive(function.invoke_queue_url, MAX_SQS_RECEIVE)
        sqs = self.stack.client("sqs")
        for message in messages:
            event = json.loads(message["Body"])
            trigger = str(event.get("detail-type") or event.get("source") or "event")
            self._invoke_with_retries(function, event, trigger)
            sqs.delete_message(QueueUrl=function.invoke_queue_url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)

    def _invoke_with_retries(self, function: LocalFunction, event: dict[str, Any], trigger: str) -> Invocation:
        attempts = 1 + function.maximum_retry_attempts
        for _attempt in range(1, attempts + 1):
            invocation = self._invoke(function, event, trigger, 1)
            if invocation.error is None:
                return invocation
        if function.on_failure_arn:
            self._send_failure_record(function, event, invocation, attempts)
        return invocation

    def _send_failure_record(
        self, function: LocalFunction, event: dict[str, Any], invocation: Invocation, attempts: int
    ) -> None:
        error_type, _, message = (invocation.error or "Error: ").partition(": ")
        record = {
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": f"{function.arn}:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": attempts,
            },
            "requestPayload": event,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": {"errorMessage": message, "errorType": error_type},
        }
        queue_name = function.on_failure_arn.rsplit(":", 1)[1]
        sqs = self.stack.client("sqs")
        sqs.send_message(QueueUrl=sqs.get_queue_url(QueueName=queue_name)["QueueUrl"], MessageBody=json.dumps(record))

    def _invoke(self, function: LocalFunction, event: dict[str, Any], trigger: str, records: int) -> Invocation:
        runtime = self.runtime(function.logical_id)
        started = datetime.now(UTC)
        clock = time.perf_counter()
        error: str | None = None
        result: Any = None
        try:
            with self._output(function), self.chaos.handler_running() if self.chaos else contextlib.nullcontext():
                result = runtime.invoke(event)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            if os.environ.get("CLOSEDLOOP_LOCAL_TRACEBACKS"):
                traceback.print_exc()
        invocation = Invocation(
            function=function.logical_id,
            started_at=started,
            duration_ms=(time.perf_counter() - clock) * 1000,
            trigger=trigger,
            records=records,
            error=error,
            result=result,
        )
        self.invocations.append(invocation)
        if self.on_invocation:
            self.on_invocation(invocation)
        return invocation

    def _sqs_record(self, message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
        attributes = message.get("Attributes", {})
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": {
                "ApproximateReceiveCount": attributes.get("ApproximateReceiveCount", "1"),
                "SentTimestamp": attributes.get("SentTimestamp", str(int(time.time() * 1000))),
                "SenderId": attributes.get("SenderId", "AIDAIENQZJOLO23YVJ4VO"),
                "ApproximateFirstReceiveTimestamp": attributes.get(
                    "ApproximateFirstReceiveTimestamp", str(int(time.time() * 1000))
                ),
            },
            "messageAttributes": {  # Lambda's event spells them in camelCase, with the list fields
                name: {
                    "stringValue": value.get("StringValue"),
                    "binaryValue": value.get("BinaryValue"),
                    "stringListValues": value.get("StringListValues", []),
                    "binaryListValues": value.get("BinaryListValues", []),
                    "dataType": value.get("DataType", "String"),
                }
                for name, value in message.get("MessageAttributes", {}).items()
            },
            "md5OfBody": message.get("MD5OfBody") or hashlib.md5(message["Body"].encode()).hexdigest(),  # noqa: S324
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": self.stack.region,
        }
