"""Typed domain errors. Each says whether retrying the same event can help.

Adapters translate `botocore` errors into these; handlers decide from `retryable` whether an
event goes back for a retry (batch item failure, raised error) or is recorded as rejected.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ClosedloopError(Exception):
    """Base of every error closedloop raises on purpose."""

    retryable: bool = False
    code: ClassVar[str] = "Error"

    def __init__(self, message: str, *, retryable: bool | None = None, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context
        if retryable is not None:
            self.retryable = retryable

    def as_dict(self) -> dict[str, Any]:
        """A structured form for logs, the ledger and DLQ reasons (never holds data values)."""
        return {"error": self.code, "message": self.message, "retryable": self.retryable, **self.context}


class SettingsError(ClosedloopError):
    code = "InvalidSettings"


class InvalidEventError(ClosedloopError):
    """The event is not one this route handles, or breaks a rule (bad key, unknown dataset)."""

    code = "InvalidEvent"


class ForeignEventError(InvalidEventError):
    """The event is about a resource of another account, region or stack: not ours to act on."""

    code = "ForeignEvent"


class UnknownDatasetError(InvalidEventError):
    code = "UnknownDataset"


class DatasetPolicyError(ClosedloopError):
    code = "InvalidDatasetPolicy"


class ThrottledError(ClosedloopError):
    retryable = True
    code = "Throttled"


class ResourceLimitError(ClosedloopError):
    """A service quota is exhausted (ResourceLimitExceeded, ConcurrentRunsExceeded): retry later, not hot."""

    retryable = True
    code = "ResourceLimitExceeded"


class AwsServiceError(ClosedloopError):
    """Any other AWS error; retryable when the service says it is transient (5xx)."""

    code = "AwsServiceError"


class LockHeldError(ClosedloopError):
    code = "LockHeld"


class MissingEvidenceError(ClosedloopError):
    code = "MissingEvidence"


class EndpointBusyError(ClosedloopError):
    """The endpoint is being created or updated; the event must come back later."""

    retryable = True
    code = "EndpointBusy"


class ApproverNotAllowedError(ClosedloopError):
    code = "ApproverNotAllowed"


class UnknownAlarmError(InvalidEventError):
    """An alarm that maps to no model group of this stack (name or `closedloop:model-group` tag)."""

    code = "UnknownAlarm"


class EndpointUnusableError(ClosedloopError):
    """The endpoint is Failed, OutOfService or UpdateRollbackFailed: only a person can repair it."""

    code = "EndpointUnusable"
