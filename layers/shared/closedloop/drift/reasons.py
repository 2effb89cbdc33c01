"""Why a run measures nothing, or a file is left out: short reasons that never hold the data."""

from __future__ import annotations

from pydantic import ValidationError

from closedloop.events.base import validation_problems

REASON_CHARS = 200


class NotMeasurable(Exception):
    """A reason not to measure this run (recorded), not a failure."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def problem(exc: BaseException) -> str:
    """Why a document was refused — where and what, never the values it held."""
    if isinstance(exc, ValidationError):
        return "; ".join(f"{p['at']}: {p['problem']}" for p in validation_problems(exc)[:3])
    return short(exc)


def short(exc: BaseException) -> str:
    """The first line of an exception's text, at most `REASON_CHARS` characters."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 1] + "…"
