"""The bad day, on purpose: duplicated and reordered events, throttling, crashes after side effects.

`closedloop demo --chaos SEED` runs the same scenario with a `Chaos` attached to the local loop:

* every event a queue delivers is delivered 1-3 times (copies are new messages with the same body,
  as SQS and EventBridge duplicates are) and each batch is shuffled;
* `throttle_rate` of SageMaker and Glue calls made by handlers get `ThrottlingException` from the
  "service" (injected at the HTTP layer, so the clients' own retry policy deals with it);
* the first ledger write of each route after its side effect crashes the function ("it died after
  starting the job, before writing it down"); Lambda or SQS delivers the event again.

Everything is drawn from one seeded random generator, so a run is reproducible.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

COPY_ATTRIBUTE = "closedloop-chaos-copy"
THROTTLED_SERVICES = ("sagemaker", "glue")
SIDE_EFFECT_RESULTS = frozenset({"started", "approved", "rejected", "deploying", "live", "published"})


class ChaosCrash(RuntimeError):
    """The function 'died' after its side effect and before its ledger write."""


class _RawBody:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


@dataclass
class Chaos:
    seed: int
    max_copies: int = 3
    throttle_rate: float = 0.1
    stats: Counter[str] = field(default_factory=Counter)
    crashed_routes: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)  # noqa: S311 - chaos, not security
        self._lock = threading.Lock()
        self._in_handler = threading.local()

    # -- duplicates and order ------------------------------------------------------------------

    def on_receive(self, sqs: Any, queue_url: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Shuffle a received batch, and send 0-2 extra copies of each first delivery back to its queue."""
        for message in messages:
            attributes = message.get("MessageAttributes", {})
            if (
                COPY_ATTRIBUTE in attributes
                or int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1")) > 1
            ):
                continue
            self.stats["events"] += 1
            for _ in range(self.rng.randint(1, self.max_copies) - 1):
                sqs.send_message(
                    QueueUrl=queue_url,
                    MessageBody=message["Body"],
                    MessageAttributes={COPY_ATTRIBUTE: {"DataType": "String", "StringValue": "1"}},
                )
                self.stats["duplicates"] += 1
        shuffled = list(messages)
        self.rng.shuffle(shuffled)
        return shuffled

    # -- throttling ------------------------------------------------------------------------------

    def _before_send(self, request: Any, **_: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        if not getattr(self._in_handler, "active", False):
            return None
        with self._lock:
            throttle = self.rng.random() < self.throttle_rate
        if not throttle:
            return None
        self.stats["throttles"] += 1
        body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
        headers = {"x-amzn-ErrorType": "ThrottlingException", "Content-Type": "application/x-amz-json-1.1"}
        return AWSResponse(request.url, 400, headers, _RawBody(body))

    # -- crashes -----------------------------------------------------------------------------------

    def _crash_before(self, route: str, result: str) -> None:
        if not getattr(self._in_handler, "active", False) or result not in SIDE_EFFECT_RESULTS:
            return
        with self._lock:
            if route in self.crashed_routes:
                return
            self.crashed_routes.add(route)
        self.stats["crashes"] += 1
        raise ChaosCrash(f"chaos: the {route} function died after its side effect, before its ledger write")

    # -- switching it on -------------------------------------------------------------------------

    @contextmanager
    def handler_running(self) -> Iterator[None]:
        self._in_handler.active = True
        try:
            yield
        finally:
            self._in_handler.active = False

    @contextmanager
    def installed(self) -> Iterator[Chaos]:
        """Patch botocore (throttling) and the ledger (crashes) for the duration of the block."""
        import botocore.session

        from closedloop.ledger import Ledger

        original_create = botocore.session.Session.create_client
        original_record = Ledger.record
        chaos = self

        def create_client(session: Any, service_name: str, *args: Any, **kwargs: Any) -> Any:
            client = original_create(session, service_name, *args, **kwargs)
            if service_name in THROTTLED_SERVICES:
                client.meta.events.register_first(f"before-send.{service_name}", chaos._before_send)
            return client

        def record(ledger: Ledger, decision: Any) -> Any:
            chaos._crash_before(decision.route, decision.result)
            return original_record(ledger, decision)

        botocore.session.Session.create_client = create_client  # type: ignore[method-assign]
        Ledger.record = record  # type: ignore[method-assign]
        try:
            yield self
        finally:
            botocore.session.Session.create_client = original_create  # type: ignore[method-assign]
            Ledger.record = original_record  # type: ignore[method-assign]
