"""The local loop's handler output: each log line names the function that wrote it; readable on a terminal."""

from __future__ import annotations

import io
import json

from closedloop_ops.cli import local_loop_banner
from closedloop_ops.local.dispatcher import FunctionLines

RECORD = {
    "level": "INFO",
    "location": "handle:42",
    "message": "alarm decided",
    "timestamp": "2026-12-02 17:20:39,555+0000",
    "service": "start_data_prep",  # what the shared Logger was built with
    "cold_start": False,
    "function_name": "closedloop-StartRetrainingFunction",
    "alarm": "closedloop-loans-drift-features",
    "result": "started",
}
EMF = {
    "_aws": {
        "Timestamp": 1,
        "CloudWatchMetrics": [{"Namespace": "closedloop", "Metrics": [{"Name": "RetrainingsStarted"}]}],
    },
    "RetrainingsStarted": [1.0],
}


def test_json_lines_are_tagged_with_the_function_that_wrote_them() -> None:
    # Given two functions writing through one shared Logger (built with the first one's service)
    sink = io.StringIO()
    FunctionLines(sink, "start_retraining", readable=False).write(json.dumps(RECORD) + "\n" + json.dumps(EMF) + "\n")
    FunctionLines(sink, "approval_gate", readable=False).write(json.dumps(RECORD) + "\n")
    # Then each line names its own function; metrics pass unchanged
    first, metrics, second = (json.loads(line) for line in sink.getvalue().splitlines())
    assert first["service"] == "start_retraining" and second["service"] == "approval_gate"
    assert first["alarm"] == "closedloop-loans-drift-features" and metrics == EMF


def test_a_terminal_gets_one_readable_line_per_record_even_when_written_in_pieces() -> None:
    sink = io.StringIO()
    lines = FunctionLines(sink, "start_retraining", readable=True)
    text = json.dumps(RECORD) + "\n" + json.dumps(EMF) + "\nplain text from a library\n"
    for start in range(0, len(text), 7):  # a handler's print may arrive in any chunks
        lines.write(text[start : start + 7])
    lines.flush()
    assert sink.getvalue().splitlines() == [
        "17:20:39,555 start_retraining   INFO    alarm decided alarm=closedloop-loans-drift-features result=started",
        "             start_retraining   METRIC  RetrainingsStarted=[1.0]",
        "plain text from a library",
    ]


def test_local_up_says_how_to_reach_the_loop_from_your_own_code() -> None:
    banner = local_loop_banner("http://127.0.0.1:50123", "eu-west-1", "closedloop-local")
    assert "export AWS_ENDPOINT_URL=http://127.0.0.1:50123 AWS_REGION=eu-west-1" in banner
    assert 'boto3.client("s3", endpoint_url="http://127.0.0.1:50123", region_name="eu-west-1"' in banner
