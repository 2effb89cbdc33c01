"""The single-flight lock of drift measurement per endpoint (with a lease, kept in the ledger)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from closedloop.errors import ClosedloopError
from closedloop.ledger import Ledger
from closedloop.observability import logger


class DriftRunLock:
    """One measurement of an endpoint at a time; a run that crashed frees it when its lease runs out."""

    def __init__(self, ledger: Ledger, *, lease: timedelta) -> None:
        self._ledger = ledger
        self._lease = lease

    @staticmethod
    def name(endpoint: str) -> str:
        return f"drift-monitor#{endpoint}"

    def acquire(self, endpoint: str, execution_id: str) -> str:
        """Take the lock for one run of a schedule execution; returns the holder name to release it with.

        Raises:
            LockHeldError: another run is measuring this endpoint (context: holder, expires_at).
        """
        # A name of its own per run: a schedule delivered twice at once (same execution id) measures once.
        holder = f"{execution_id}#{uuid.uuid4().hex[:12]}"
        self._ledger.acquire_lock(self.name(endpoint), holder, self._lease, reason="drift measurement")
        return holder

    def release(self, endpoint: str, holder: str) -> None:
        """Release the run's lock; when that fails, the lease frees it anyway (logged, not raised)."""
        try:
            self._ledger.release_lock(self.name(endpoint), holder)
        except ClosedloopError as exc:
            logger.warning("drift run lock not released", error=exc.as_dict())
