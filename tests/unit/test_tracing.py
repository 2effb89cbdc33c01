"""X-Ray subsegments without the X-Ray SDK (closedloop.tracing), received by a UDP socket on loopback
standing in for the daemon Lambda runs."""

from __future__ import annotations

import json
import socket
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError
from moto import mock_aws

from closedloop.tracing import HANDLER_SUBSEGMENT, TraceHeader, Tracer, daemon_address
from support.xray import received

ROOT_ID = "1-6756a1b2-0123456789abcdef01234567"
PARENT_ID = "53995c3f42cd8ad8"


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch, xray_daemon: socket.socket) -> pytest.MonkeyPatch:
    host, port = xray_daemon.getsockname()
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "closedloop-test-DeployModelFunction")
    monkeypatch.setenv("AWS_XRAY_DAEMON_ADDRESS", f"{host}:{port}")
    monkeypatch.setenv("_X_AMZN_TRACE_ID", f"Root={ROOT_ID};Parent={PARENT_ID};Sampled=1;Lineage=a87bd80c:0")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "deploy_model")
    monkeypatch.delenv("POWERTOOLS_TRACE_DISABLED", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    return monkeypatch


def traced_s3(tracer: Tracer, **client_args: Any) -> Any:
    session = boto3.session.Session()
    tracer.instrument(session.events)
    return session.client("s3", region_name="eu-west-1", **client_args)


@mock_aws
def test_a_sampled_invocation_sends_the_handler_and_each_aws_call_as_subsegments_of_lambdas_trace(
    lambda_env: pytest.MonkeyPatch, xray_daemon: socket.socket
) -> None:
    # Given a tracer, a traced client and a handler that makes one good and one failing call
    tracer = Tracer()
    s3 = traced_s3(tracer)
    s3.create_bucket(Bucket="loans-raw-data", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})

    @tracer.capture_lambda_handler
    def handler(event: dict[str, Any], context: object) -> str:
        s3.put_object(Bucket="loans-raw-data", Key="raw/loans/part-0.csv", Body=b"id\n1\n")
        with pytest.raises(ClientError):
            s3.head_object(Bucket="loans-raw-data", Key="raw/loans/customer-4711.csv")
        return "done"

    # When Lambda invokes it twice, both invocations sampled
    assert handler({}, None) == "done"
    first = received(xray_daemon)
    handler({}, None)
    second = received(xray_daemon)

    # Then each invocation sent its two calls and then the handler, all in Lambda's trace
    assert [d["name"] for d in first] == ["S3", "S3", HANDLER_SUBSEGMENT]
    put, head, whole = first
    for document in first:
        assert document["type"] == "subsegment"
        assert document["trace_id"] == ROOT_ID
        assert len(document["id"]) == 16 and int(document["id"], 16) >= 0
        assert document["start_time"] <= document["end_time"]
    assert whole["parent_id"] == PARENT_ID
    assert put["parent_id"] == head["parent_id"] == whole["id"]
    assert whole["annotations"] == {"ColdStart": True, "Service": "deploy_model"}
    assert second[-1]["annotations"]["ColdStart"] is False
    # the calls as X-Ray's AWS subsegments: operation, region, request id, status; a 404 is an error
    assert put["namespace"] == "aws"
    assert put["aws"]["operation"] == "PutObject" and put["aws"]["region"] == "eu-west-1"
    assert put["aws"]["request_id"] and put["aws"]["retries"] == 0
    assert put["http"] == {"response": {"status": 200}} and "error" not in put
    assert head["aws"]["operation"] == "HeadObject" and head["http"]["response"]["status"] == 404
    assert head["error"] is True and head["throttle"] is False and "fault" not in head
    assert head["cause"]["exceptions"][0]["type"] == "404"
    # and no parameter or data value travels: not the bucket, not the key
    sent = json.dumps(first)
    assert "loans-raw-data" not in sent and "customer-4711" not in sent and "part-0" not in sent
    assert len({d["id"] for d in first + second}) == 6


def test_a_handler_that_raises_is_a_fault_named_by_its_exception_type_and_still_raises(
    lambda_env: pytest.MonkeyPatch, xray_daemon: socket.socket
) -> None:
    tracer = Tracer()

    @tracer.capture_lambda_handler
    def handler(event: dict[str, Any], context: object) -> None:
        raise KeyError("customer-4711")

    with pytest.raises(KeyError):
        handler({}, None)

    (document,) = received(xray_daemon)
    assert document["name"] == HANDLER_SUBSEGMENT and document["fault"] is True
    assert document["cause"]["exceptions"][0]["type"] == "KeyError"
    assert "customer-4711" not in json.dumps(document)


def test_a_call_that_never_reached_aws_is_a_fault_of_its_own(
    lambda_env: pytest.MonkeyPatch, xray_daemon: socket.socket
) -> None:
    tracer = Tracer()
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused at once
    s3 = traced_s3(
        tracer,
        endpoint_url=f"http://127.0.0.1:{refused.getsockname()[1]}",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )

    @tracer.capture_lambda_handler
    def handler(event: dict[str, Any], context: object) -> None:
        with pytest.raises(EndpointConnectionError):
            s3.list_buckets()

    try:
        handler({}, None)
    finally:
        refused.close()

    call, whole = received(xray_daemon)
    assert call["fault"] is True and call["parent_id"] == whole["id"]
    assert call["cause"]["exceptions"][0]["type"] == "EndpointConnectionError"
    assert call["name"] == "S3" and call["aws"]["operation"] == "ListBuckets"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"_X_AMZN_TRACE_ID": f"Root={ROOT_ID};Parent={PARENT_ID};Sampled=0"}, "not sampled"),
        ({"_X_AMZN_TRACE_ID": None}, "no trace header"),
        ({"POWERTOOLS_TRACE_DISABLED": "true"}, "tracing turned off"),
        ({"AWS_LAMBDA_FUNCTION_NAME": None}, "not on Lambda"),
    ],
)
@mock_aws
def test_nothing_is_sent_unless_lambda_samples_the_invocation(
    lambda_env: pytest.MonkeyPatch, xray_daemon: socket.socket, change: dict[str, str | None], why: str
) -> None:
    for name, value in change.items():
        if value is None:
            lambda_env.delenv(name, raising=False)
        else:
            lambda_env.setenv(name, value)
    tracer = Tracer()
    s3 = traced_s3(tracer)

    @tracer.capture_lambda_handler
    def handler(event: dict[str, Any], context: object) -> int:
        return len(s3.list_buckets()["Buckets"])

    assert handler({}, None) == 0
    assert received(xray_daemon) == [], why


@mock_aws
def test_calls_outside_an_invocation_are_not_traced(lambda_env: pytest.MonkeyPatch, xray_daemon: socket.socket) -> None:
    tracer = Tracer()
    traced_s3(tracer).list_buckets()  # e.g. at import, or in a tool sharing the module
    assert received(xray_daemon) == []


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("169.254.79.129:2000", ("169.254.79.129", 2000)),
        ("tcp:127.0.0.1:2000 udp:127.0.0.2:2001", ("127.0.0.2", 2001)),
        ("udp:10.0.0.1:3000 tcp:10.0.0.1:3001", ("10.0.0.1", 3000)),
        ("", ("127.0.0.1", 2000)),
        ("not-an-address", ("127.0.0.1", 2000)),
    ],
)
def test_the_daemon_address_as_lambda_and_the_daemon_write_it(value: str, address: tuple[str, int]) -> None:
    assert daemon_address({"AWS_XRAY_DAEMON_ADDRESS": value}) == address


def test_the_trace_header_as_lambda_sets_it() -> None:
    header = TraceHeader.parse(f"Root={ROOT_ID};Parent={PARENT_ID};Sampled=1;Lineage=a87bd80c:0")
    assert header == TraceHeader(root=ROOT_ID, parent=PARENT_ID, sampled=True)
    assert TraceHeader.parse(f"Root={ROOT_ID};Sampled=1") is None  # nothing to attach to
    assert TraceHeader.parse(f"Root={ROOT_ID};Parent={PARENT_ID}").sampled is False  # type: ignore[union-attr]
