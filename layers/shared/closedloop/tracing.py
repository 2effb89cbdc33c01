"""X-Ray tracing without the X-Ray SDK: the handler and every AWS call, as subsegments of Lambda's trace.

With `Tracing: Active`, Lambda records each invocation's segment itself and hands the function its
trace header (`_X_AMZN_TRACE_ID`: `Root=…;Parent=…;Sampled=…`); botocore forwards that header on
every AWS call, so the trace follows the event into SageMaker, SQS and EventBridge with no library
at all. What a library adds is the function's own detail. This module adds it on the invocations
Lambda samples (`Sampled=1`), and does nothing on the others or outside Lambda:

* `## lambda_handler` — the handler, annotated `ColdStart` and `Service` (as Powertools' tracer
  does), marked `fault` with the exception's type when the handler raises;
* one `aws` subsegment per AWS call, from the sessions `closedloop.aws` builds: service,
  operation, region, request id, retries, HTTP status; `error` / `throttle` / `fault` as the
  X-Ray SDK sets them, with the error code. Never a parameter, a response body or a message:
  those carry data values.

Each subsegment is sent as it ends, as an independent subsegment document over UDP to the daemon
Lambda runs (`AWS_XRAY_DAEMON_ADDRESS`), in the format X-Ray documents ("Sending segment documents
to the X-Ray daemon"; "AWS X-Ray segment documents"). Sending is best effort, as the SDK's is: a
lost datagram loses a subsegment, never an invocation.

Why not the X-Ray SDK (through Powertools' `Tracer`): importing it, with `wrapt` and `asyncio`, was
~20 ms of every cold start, and AWS put the X-Ray SDKs in maintenance mode on 2026-02-25 (end of
support 2027-02-25). docs/architecture.md, "Tracing".
"""

from __future__ import annotations

import functools
import json
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, TypeVar

HEADER = b'{"format": "json", "version": 1}\n'
DEFAULT_DAEMON = ("127.0.0.1", 2000)
HANDLER_SUBSEGMENT = "## lambda_handler"
TRUE = frozenset({"1", "true", "yes", "on"})

Handler = TypeVar("Handler", bound=Callable[..., Any])


class TraceHeader(NamedTuple):
    root: str
    parent: str
    sampled: bool

    @classmethod
    def parse(cls, header: str) -> TraceHeader | None:
        """`Root=1-…;Parent=…;Sampled=1[;Lineage=…]`, or None if it names no trace to join."""
        parts = dict(part.strip().partition("=")[::2] for part in header.split(";") if "=" in part)
        root, parent = parts.get("Root", ""), parts.get("Parent", "")
        if not root or not parent:
            return None
        return cls(root=root, parent=parent, sampled=parts.get("Sampled") == "1")


def daemon_address(environ: Mapping[str, str]) -> tuple[str, int]:
    """Where the daemon listens for UDP: `host:port`, or the `udp:` part of `tcp:host:port udp:host:port`."""
    value = environ.get("AWS_XRAY_DAEMON_ADDRESS", "").strip()
    if not value:
        return DEFAULT_DAEMON
    for part in value.split():
        if part.startswith("udp:"):
            value = part[4:]
            break
        if not part.startswith("tcp:"):
            value = part
    host, _, port = value.rpartition(":")
    return (host or DEFAULT_DAEMON[0], int(port)) if port.isdigit() else DEFAULT_DAEMON


def new_id() -> str:
    """A subsegment id: 64 random bits, hex (drawn per subsegment, never at import)."""
    return os.urandom(8).hex()


class Emitter:
    """Sends documents to the daemon; the socket is opened on the first send, not at import."""

    def __init__(self) -> None:
        self._socket: socket.socket | None = None

    def send(self, document: dict[str, Any], address: tuple[str, int]) -> None:
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._socket.sendto(HEADER + json.dumps(document, separators=(",", ":")).encode(), address)
        except (OSError, ValueError):
            pass  # best effort: a trace never fails an invocation


class Invocation:
    """The sampled invocation in progress: its trace, the handler's subsegment, where to send, and
    the AWS calls under way (by their request context: subsegment id, start and operation model)."""

    __slots__ = ("calls", "daemon", "handler_id", "trace")

    def __init__(self, trace: TraceHeader, daemon: tuple[str, int]) -> None:
        self.trace = trace
        self.daemon = daemon
        self.handler_id = new_id()
        self.calls: dict[int, tuple[str, float, Any]] = {}


class Tracer:
    """Subsegments for the handler and its AWS calls on the invocations Lambda samples."""

    def __init__(self, emitter: Emitter | None = None) -> None:
        self._emitter = emitter or Emitter()
        self._current: Invocation | None = None
        self._cold_start = True

    @staticmethod
    def enabled(environ: Mapping[str, str]) -> bool:
        """On Lambda, unless `POWERTOOLS_TRACE_DISABLED` turns it off (the local loop, tests)."""
        disabled = environ.get("POWERTOOLS_TRACE_DISABLED", "").strip().lower() in TRUE
        return bool(environ.get("AWS_LAMBDA_FUNCTION_NAME")) and not disabled

    def capture_lambda_handler(self, handler: Handler) -> Handler:
        """Record the handler as `## lambda_handler` when the invocation is sampled."""

        @functools.wraps(handler)
        def traced(event: Any, context: Any) -> Any:
            cold_start, self._cold_start = self._cold_start, False
            invocation = self._begin(os.environ)
            if invocation is None:
                return handler(event, context)
            start = time.time()
            document: dict[str, Any] = {
                "annotations": {"ColdStart": cold_start, "Service": os.environ.get("POWERTOOLS_SERVICE_NAME", "")}
            }
            try:
                return handler(event, context)
            except Exception as exc:
                document.update(fault=True, cause={"exceptions": [{"id": new_id(), "type": type(exc).__name__}]})
                raise
            finally:
                self._current = None
                parent = invocation.trace.parent
                self._send(invocation, invocation.handler_id, parent, HANDLER_SUBSEGMENT, start, document)

        return traced  # type: ignore[return-value]

    def _begin(self, environ: Mapping[str, str]) -> Invocation | None:
        self._current = None
        if not self.enabled(environ):
            return None
        trace = TraceHeader.parse(environ.get("_X_AMZN_TRACE_ID", ""))
        if trace is None or not trace.sampled:
            return None
        self._current = Invocation(trace, daemon_address(environ))
        return self._current

    # -- botocore's events, on every session closedloop.aws builds -----------------------------------

    def instrument(self, events: Any) -> None:
        """Register on a botocore event emitter (a session's, before its clients are built)."""
        events.register("before-parameter-build", self._call_started, unique_id="closedloop-trace-start")
        events.register("after-call", self._call_ended, unique_id="closedloop-trace-end")
        events.register("after-call-error", self._call_failed, unique_id="closedloop-trace-error")

    def _call_started(self, model: Any = None, context: dict[str, Any] | None = None, **_: Any) -> None:
        invocation = self._current
        if invocation is not None and context is not None and model is not None:
            invocation.calls[id(context)] = (new_id(), time.time(), model)

    def _call_ended(self, http_response: Any = None, parsed: Any = None, context: Any = None, **_: Any) -> None:
        started = self._started(context)
        if started is None:
            return
        invocation, call_id, start, model = started
        response = parsed if isinstance(parsed, dict) else {}
        metadata = response.get("ResponseMetadata", {})
        status = int(getattr(http_response, "status_code", 0) or metadata.get("HTTPStatusCode", 0) or 0)
        document = self._aws_document(model, context, metadata)
        document["http"] = {"response": {"status": status}}
        if status >= 400:
            code = str((response.get("Error") or {}).get("Code", ""))
            # as X-Ray classifies them: 4xx an error (429 also a throttle), 5xx a fault
            document.update({"fault": True} if status >= 500 else {"error": True, "throttle": status == 429})
            document["cause"] = {"exceptions": [{"id": new_id(), "type": code or f"HTTP {status}", "remote": True}]}
        self._send(invocation, call_id, invocation.handler_id, model.service_model.service_id, start, document)

    def _call_failed(self, exception: BaseException | None = None, context: Any = None, **_: Any) -> None:
        started = self._started(context)
        if started is None:
            return
        invocation, call_id, start, model = started
        # no response: the call never got one (connection refused, timed out); named by its operation
        document = self._aws_document(model, context, {})
        document.update(fault=True, cause={"exceptions": [{"id": new_id(), "type": type(exception).__name__}]})
        self._send(invocation, call_id, invocation.handler_id, model.service_model.service_id, start, document)

    def _started(self, context: Any) -> tuple[Invocation, str, float, Any] | None:
        invocation = self._current
        if invocation is None or context is None:
            return None
        call = invocation.calls.pop(id(context), None)
        return None if call is None else (invocation, *call)

    @staticmethod
    def _aws_document(model: Any, context: Any, metadata: Mapping[str, Any]) -> dict[str, Any]:
        aws: dict[str, Any] = {"operation": model.name, "retries": int(metadata.get("RetryAttempts", 0) or 0)}
        region = context.get("client_region") if isinstance(context, dict) else None
        if region:
            aws["region"] = region
        if metadata.get("RequestId"):
            aws["request_id"] = metadata["RequestId"]
        return {"namespace": "aws", "aws": aws}

    def _send(
        self, invocation: Invocation, subsegment_id: str, parent_id: str, name: str, start: float, extra: dict[str, Any]
    ) -> None:
        document = {
            "type": "subsegment",
            "id": subsegment_id,
            "trace_id": invocation.trace.root,
            "parent_id": parent_id,
            "name": name,
            "start_time": start,
            "end_time": time.time(),
            **extra,
        }
        self._emitter.send(document, invocation.daemon)


tracer = Tracer()
