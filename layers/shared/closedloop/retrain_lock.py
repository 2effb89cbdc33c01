"""The single-flight retraining lock of a model group (with a lease, kept in the ledger).

Whoever starts a retraining (an alarm, new prepared data) acquires the lock first, starts the
pipeline, then binds the execution ARN to the lock; the pipeline-finished route releases it for that
execution. A holder that died leaves a lease that anyone may take once it runs out (the pipeline's
maximum run time), so a crash never blocks retraining for good.
"""

from __future__ import annotations

from datetime import timedelta

from closedloop.ledger import Ledger, Lock


class RetrainLock:
    """Single-flight retraining per model group."""

    def __init__(self, ledger: Ledger, *, lease: timedelta) -> None:
        self._ledger = ledger
        self._lease = lease

    @staticmethod
    def name(model_group: str) -> str:
        return f"retrain#{model_group}"

    def acquire(self, model_group: str, holder: str, reason: str) -> Lock:
        """Take the lock (or re-take it as the same holder).

        Raises:
            LockHeldError: a retraining of this group is running (context: holder, expires_at).
        """
        return self._ledger.acquire_lock(self.name(model_group), holder, self._lease, reason=reason)

    def bind_execution(self, model_group: str, holder: str, execution_arn: str) -> None:
        """Record the pipeline execution the holder started. Raises LockHeldError if not held."""
        self._ledger.bind_lock(self.name(model_group), holder, execution_arn)

    def release(self, model_group: str, holder: str) -> bool:
        """Release the lock the holder has (e.g. when starting the pipeline failed)."""
        return self._ledger.release_lock(self.name(model_group), holder)

    def release_for_execution(self, model_group: str, execution_arn: str) -> bool:
        """Release the lock if this execution holds it; False when another one (or none) does."""
        lock = self._ledger.get_lock(self.name(model_group))
        if lock is None or lock.execution_arn != execution_arn:
            return False
        return self._ledger.release_lock(lock.name, lock.holder)

    def current(self, model_group: str) -> Lock | None:
        return self._ledger.get_lock(self.name(model_group))
