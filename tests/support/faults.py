"""Faults injected into a function's boto3 clients through botocore's event hooks (seeded: every run the same).

Where each fault enters the client decides what it models:
* `before-call` answers a call without sending it: the error reaches closedloop's code as if the
  client's own retries (adaptive, 8 attempts) had all failed — the worst case the domain code sees;
* `before-send` answers one HTTP attempt, below the client's retry handler (the request never
  reaches AWS): the hook counts every attempt the client makes, so a test can tell a deferred
  error from one retried hot;
* `after-call` lets a call reach AWS (moto) and then kills the invocation before the answer is
  used: a timeout between a side effect and the records that say it happened.

The hooks go on the clients the handler module built (`closedloop.aws`), never on the test's own
clients, so the world a test sets up and inspects is not disturbed.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError


class Crash(BaseException):
    """The invocation dies here (Lambda timeout, out of memory): no `except Exception` sees it."""


def aws_error(code: str, message: str = "", status: int = 400) -> tuple[AWSResponse, dict[str, Any]]:
    """What `before-call` returns to answer a call with an AWS error instead of sending it."""
    parsed = {
        "Error": {"Code": code, "Message": message or code},
        "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": "fault-injection"},
    }
    return AWSResponse("https://fault.invalid/", status, {}, None), parsed


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


def _http_error(url: str, code: str, message: str) -> AWSResponse:
    """An HTTP answer in the JSON protocol's error format (SageMaker, Glue, DynamoDB…)."""
    body = json.dumps({"__type": code, "message": message}).encode()
    return AWSResponse(url, 400, {"x-amzn-errortype": code, "content-type": "application/x-amz-json-1.1"}, _Body(body))


def _service_id(client: Any) -> str:
    return str(client.meta.service_model.service_id.hyphenize())


@dataclass
class Injected:
    """What a fault did: calls seen and answered per operation."""

    calls: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)

    @property
    def total_faults(self) -> int:
        return sum(self.faults.values())


@contextmanager
def _hooked(client: Any, event: str, hook: Callable[..., Any], *, first: bool = False) -> Iterator[None]:
    events = client.meta.events
    if first:
        events.register_first(event, hook)
    else:
        events.register(event, hook)
    try:
        yield
    finally:
        events.unregister(event, hook)


@contextmanager
def throttled(client: Any, *, rate: float, seed: int, code: str = "ThrottlingException") -> Iterator[Injected]:
    """Answer `rate` of the client's calls with `code` (seeded), as if its own retries had run out."""
    rng = random.Random(seed)
    injected = Injected()

    def hook(model: Any, **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        injected.calls[model.name] += 1
        if rng.random() < rate:
            injected.faults[model.name] += 1
            return aws_error(code, "Rate exceeded")
        return None

    with _hooked(client, f"before-call.{_service_id(client)}", hook):
        yield injected


@contextmanager
def failing(
    client: Any, operation: str, code: str, message: str = "", *, times: int | None = None
) -> Iterator[Injected]:
    """Answer every attempt (or the first `times`) of `operation` with `code`, below the client's retries."""
    injected = Injected()

    def hook(request: Any, **_: Any) -> AWSResponse | None:
        injected.calls[operation] += 1
        if times is not None and injected.faults[operation] >= times:
            return None
        injected.faults[operation] += 1
        # botocore offers every `before-send` handler the request; pointed nowhere, the emulator's
        # handler (which runs after this one) leaves it alone, as AWS never received it
        request.url = "https://fault-injection.invalid/"
        return _http_error(request.url, code, message or code)

    with _hooked(client, f"before-send.{_service_id(client)}.{operation}", hook, first=True):
        yield injected


@contextmanager
def crash_after(client: Any, operation: str, *, times: int = 1) -> Iterator[Injected]:
    """Let `operation` reach AWS, then kill the invocation (`Crash`) before its caller sees the answer."""
    injected = Injected()

    def hook(http_response: Any, **_: Any) -> None:
        injected.calls[operation] += 1
        if http_response.status_code < 300 and injected.faults[operation] < times:
            injected.faults[operation] += 1
            raise Crash(f"the invocation died right after {operation}")

    with _hooked(client, f"after-call.{_service_id(client)}.{operation}", hook):
        yield injected


@contextmanager
def slowed(client: Any, operation: str, seconds: float = 0.05) -> Iterator[Injected]:
    """Hold every call of `operation` for `seconds` before it is sent: a concurrent delivery catches up."""
    injected = Injected()

    def hook(**_: Any) -> None:
        injected.calls[operation] += 1
        time.sleep(seconds)

    with _hooked(client, f"before-call.{_service_id(client)}.{operation}", hook):
        yield injected


@contextmanager
def counting(client: Any, *operations: str) -> Iterator[Injected]:
    """Count the calls of `operations` the client makes (every attempt that reaches AWS)."""
    injected = Injected()

    def hook(model: Any, http_response: Any, **_: Any) -> None:
        if model.name in operations and http_response.status_code < 300:
            injected.calls[model.name] += 1

    with _hooked(client, f"after-call.{_service_id(client)}", hook):
        yield injected


@contextmanager
def unreachable_table(client: Any, table: str) -> Iterator[Injected]:
    """Every DynamoDB call on `table` fails as if its endpoint could not be reached."""
    injected = Injected()

    def hook(params: dict[str, Any], model: Any, **_: Any) -> None:
        if params.get("TableName") == table:
            injected.calls[model.name] += 1
            injected.faults[model.name] += 1
            raise EndpointConnectionError(endpoint_url="https://dynamodb.eu-west-1.amazonaws.com")

    with _hooked(client, "before-parameter-build.dynamodb", hook):
        yield injected


def race(*calls: Callable[[], Any]) -> list[Any]:
    """Run `calls` in threads released together; each one's result, or the exception it raised."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[index] = call()
        except Exception as exc:  # the caller asserts on what each delivery ended with
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
