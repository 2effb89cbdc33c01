"""The command line's one error type: a single line that says what to do."""

from __future__ import annotations


class CliError(Exception):
    """A user-facing failure: one line, with the fix; `code` is the exit status."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code
