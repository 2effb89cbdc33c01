"""`closedloop audit` and `closedloop dlq` against the local loop."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from closedloop_ops import synthetic
from closedloop_ops.cli import main
from closedloop_ops.local.loop import LocalLoop
from closedloop_ops.stackref import write_local_state


@pytest.fixture(scope="module")
def loop() -> Iterator[LocalLoop]:
    with LocalLoop.start(stack_name="closedloop-cli", services=False) as running:
        yield running


@pytest.fixture
def local(loop: LocalLoop, tmp_path: Path) -> list[str]:
    state = tmp_path / "state.json"
    write_local_state(
        state,
        name=loop.stack.stack_name,
        region=loop.stack.region,
        endpoint_url=loop.stack.endpoint_url,
        outputs=loop.stack.outputs,
    )
    return ["--local", "--state-file", str(state)]


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()  # drop what the handlers logged before the command ran
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_rejected_upload_ends_in_the_dlq_with_its_reason(
    loop: LocalLoop, local: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an upload of a dataset nobody declared
    loop.client("s3").put_object(Bucket=loop.output("DataBucketName"), Key="raw/payroll/x.csv", Body=b"a,b\n1,2\n")
    # When SQS has delivered it MaxReceiveCount times
    loop.settle()
    # Then it is in the data-arrival DLQ, and the CLI says why
    code, out, _ = run(["dlq", "list", *local, "--json"], capsys)
    depths = {d["queue"]: d["messages"] for d in json.loads(out)}
    assert code == 0 and depths["DataArrivalDlq"] == 1
    code, out, _ = run(["dlq", "show", "DataArrivalDlq", *local, "--json"], capsys)
    letters = json.loads(out)
    assert [(x["kind"], x["reason"]) for x in letters] == [
        ("sqs-redrive", "no model line 'payroll' is deployed in this stack (ModelLines)")
    ]
    # And the audit shows the rejection
    code, out, _ = run(["audit", "--since", "2000-01-01", *local, "--format", "csv"], capsys)
    assert "validate_event,rejected" in out and "payroll" in out


def test_redriving_an_event_that_was_handled_meanwhile_is_a_no_op(
    loop: LocalLoop, local: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    sqs = loop.client("sqs")
    dlq = loop.output("DataArrivalDlqUrl")
    sqs.purge_queue(QueueUrl=dlq)
    # Given an upload that was prepared
    s3 = loop.client("s3")
    s3.put_object(
        Bucket=loop.output("DataBucketName"),
        Key="raw/loans/redrive/a.csv",
        Body=synthetic.to_csv(list(synthetic.rows(20))).encode(),
    )
    sqs_queue = loop.output("DataArrivalQueueUrl")
    # (capture its event on the way: the data-arrival queue gets it first)
    body = sqs.receive_message(QueueUrl=sqs_queue, VisibilityTimeout=0)["Messages"][0]["Body"]
    loop.settle()
    jobs_before = loop.client("sagemaker").list_processing_jobs()["ProcessingJobSummaries"]
    # And a copy of its event that ended in the DLQ during an outage
    sqs.send_message(QueueUrl=dlq, MessageBody=body)
    # When the operator redrives the DLQ
    code, out, _ = run(["dlq", "redrive", "DataArrivalDlq", *local], capsys)
    assert code == 1 and "rerun with --yes" in out  # asks first
    code, out, _ = run(["dlq", "redrive", "DataArrivalDlq", *local, "--yes"], capsys)
    assert code == 0 and "redriven 1" in out
    loop.settle()
    # Then nothing new started: the objects were already taken by a run
    assert loop.client("sagemaker").list_processing_jobs()["ProcessingJobSummaries"] == jobs_before
    assert (
        sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"][
            "ApproximateNumberOfMessages"
        ]
        == "0"
    )
    code, out, _ = run(["audit", "--since", "2000-01-01", *local, "--json"], capsys)
    assert any(d["result"] == "duplicate" for d in json.loads(out))


def test_errors_are_one_line_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(["dlq", "list", "--local", "--state-file", str(tmp_path / "none.json")], capsys)
    assert (
        code == 2
        and err.strip()
        == "closedloop: the local loop is not running: start it with `closedloop local up` (or `make demo`)"
    )
    code, _, err = run(
        ["audit", "--since", "yesterday-ish", "--local", "--state-file", str(tmp_path / "none.json")], capsys
    )
    assert code == 2 and len(err.strip().splitlines()) == 1
    # no credentials for a deployed stack
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    code, _, err = run(["dlq", "list", "--stack", "closedloop-dev", "--region", "eu-west-1"], capsys)
    assert code == 2 and "no AWS credentials" in err and "Traceback" not in err
