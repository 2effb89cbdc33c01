"""Log keys a handler appends in one invocation do not follow it into the next (a warm Lambda container)."""

from __future__ import annotations

import contextlib

import pytest

from closedloop.observability import logger
from support.handlers import invoke, load_handler
from support.stack import Stack

FUNCTIONS = [
    "start_data_prep",
    "start_training",
    "approval_gate",
    "deploy_model",
    "record_deployment",
    "start_retraining",
    "drift_monitor",
]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_keys_of_the_previous_invocation_are_gone(stack: Stack, name: str) -> None:
    # Given a warm container whose previous invocation appended its run's keys (as route 2 and 3 do)
    handler = load_handler(name)
    logger.append_keys(prep_run_id="run-of-invocation-1", execution_arn="arn-of-invocation-1")
    # When the next invocation arrives (one the handler refuses or skips: nothing appends again)
    with contextlib.suppress(Exception):  # refused or answered: only the keys it logs with matter here
        invoke(handler, {"version": "0", "id": "invocation-2"})
    # Then none of the previous invocation's keys is on its log lines
    current = logger.get_current_keys()
    assert "prep_run_id" not in current and "execution_arn" not in current
    assert current.get("function_request_id") == "00000000-0000-0000-0000-000000000000"
