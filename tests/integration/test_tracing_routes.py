"""A real route, sampled by Lambda: its trace holds the handler and every AWS call it made, nested
under the handler, with nothing of the event's data (closedloop.tracing, from the handler's side)."""

from __future__ import annotations

import json
import socket
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import botocore.client
import pytest

from support.handlers import FakeLambdaContext, load_handler
from support.stack import Stack
from support.worlds import alarm_event, retraining_world
from support.xray import received

ROOT_ID = "1-6756a1b2-89abcdef0123456789abcdef"
PARENT_ID = "a1b2c3d4e5f60718"


def test_route_6_sampled_traces_each_of_its_aws_calls_under_the_handler(
    stack: Stack, xray_daemon: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the retraining route's world, and Lambda's environment for a sampled invocation
    retraining_world(stack)
    handler = load_handler("start_retraining")
    event = alarm_event(at=datetime.now(UTC))
    host, port = xray_daemon.getsockname()
    monkeypatch.delenv("POWERTOOLS_TRACE_DISABLED", raising=False)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "closedloop-test-StartRetrainingFunction")
    monkeypatch.setenv("AWS_XRAY_DAEMON_ADDRESS", f"{host}:{port}")
    monkeypatch.setenv("_X_AMZN_TRACE_ID", f"Root={ROOT_ID};Parent={PARENT_ID};Sampled=1")
    called: Counter[str] = Counter()
    make_api_call = botocore.client.BaseClient._make_api_call

    def counting(client: Any, operation: str, params: dict[str, Any]) -> Any:
        called[operation] += 1
        return make_api_call(client, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", counting)

    # When Lambda invokes the route on the alarm
    result = handler.lambda_handler(event, FakeLambdaContext())

    # Then it started the retraining, and its trace holds every AWS call it made, under the handler
    assert result["result"] == "started"
    documents = received(xray_daemon)
    (whole,) = [d for d in documents if d["name"] == "## lambda_handler"]
    calls = [d for d in documents if d.get("namespace") == "aws"]
    assert whole["parent_id"] == PARENT_ID and whole["trace_id"] == ROOT_ID
    assert whole["annotations"]["Service"] and "fault" not in whole
    assert Counter(d["aws"]["operation"] for d in calls) == called and called["StartPipelineExecution"] == 1
    assert all(d["parent_id"] == whole["id"] and d["trace_id"] == ROOT_ID for d in calls)
    assert all(whole["start_time"] <= d["start_time"] <= d["end_time"] <= whole["end_time"] for d in calls)
    # and no value of the event travels: not the alarm's name, not the execution's ARN
    sent = json.dumps(documents)
    assert event["detail"]["alarmName"] not in sent and result["execution_arn"] not in sent
