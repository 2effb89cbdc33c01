"""The ledger's endpoint state and rolled-back marks, and the lock both rollout routes take to change them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from closedloop import ledger_keys
from closedloop.deploy.models import EndpointState
from closedloop.errors import EndpointBusyError, LockHeldError
from closedloop.ledger import Clock, Ledger, utcnow

LOCK_LEASE = timedelta(minutes=2)  # a handler that died frees the endpoint after this


class EndpointStateStore:
    """`ledger_keys.endpoint_state(endpoint)` and `ledger_keys.rolled_back(arn)` for one endpoint."""

    def __init__(self, ledger: Ledger, endpoint_name: str, clock: Clock = utcnow) -> None:
        self._ledger = ledger
        self.endpoint_name = endpoint_name
        self._clock = clock

    @property
    def lock_name(self) -> str:
        return f"rollout#{self.endpoint_name}"

    @contextmanager
    def locked(self, holder: str) -> Iterator[None]:
        """Hold the endpoint's rollout lock: one deployment decision or outcome at a time.

        Every call holds it under a name of its own (`holder` and a random suffix): two deliveries
        of the same event at once must not both get in. A holder that died frees it after the lease.

        Raises:
            EndpointBusyError: another handler holds it (retryable).
        """
        holder = f"{holder}#{uuid.uuid4().hex[:12]}"
        try:
            self._ledger.acquire_lock(self.lock_name, holder, LOCK_LEASE, reason="rollout")
        except LockHeldError as exc:
            raise EndpointBusyError(
                "another rollout decision is being made for this endpoint", endpoint=self.endpoint_name, **exc.context
            ) from exc
        try:
            yield
        finally:
            self._ledger.release_lock(self.lock_name, holder)

    def get(self) -> EndpointState:
        values = self._ledger.get_state(ledger_keys.endpoint_state(self.endpoint_name))
        return EndpointState.model_validate(values or {})

    def put(self, state: EndpointState) -> EndpointState:
        """Write the state (stamped with the time of writing)."""
        stamped = state.model_copy(update={"updated_at": self._clock().isoformat()})
        self._ledger.put_state(ledger_keys.endpoint_state(self.endpoint_name), stamped.model_dump(mode="json"))
        return stamped

    def rolled_back(self, model_package_arn: str) -> dict[str, Any] | None:
        """The rolled-back mark of a version (why, when), or None: a marked version is never redeployed."""
        return self._ledger.get_state(ledger_keys.rolled_back(model_package_arn))

    def is_rolled_back(self, model_package_arn: str) -> bool:
        return self.rolled_back(model_package_arn) is not None

    def mark_rolled_back(self, model_package_arn: str, **values: Any) -> None:
        """Mark a version as rolled back (or failed): automation never deploys it again."""
        self._ledger.put_state(
            ledger_keys.rolled_back(model_package_arn),
            {"model_package_arn": model_package_arn, "at": self._clock().isoformat(), **values},
        )
