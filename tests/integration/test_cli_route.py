"""`closedloop route EVENT.json`: which rules and handlers of template.yaml an event reaches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from closedloop_ops.cli import main
from support.events import EVENTS, load_event


def test_the_upload_sample_reaches_the_data_arrival_handler(capsys: pytest.CaptureFixture[str]) -> None:
    # When the canonical upload event is routed
    code = main(["route", str(EVENTS / "s3_object_created.json"), "--json"])
    # Then it matches the data-arrival rule, through its queue, with the bucket name assumed
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [m["rule"] for m in report["matches"]] == ["DataArrivalRule"]
    assert report["matches"][0]["handlers"] == [
        "StartDataPrepFunction: functions/start_data_prep/app.py::lambda_handler (via SQS DataArrivalQueue)"
    ]
    assert report["matches"][0]["assumptions"] == ["detail.bucket.name is the stack's DataBucket"]


def test_a_key_outside_raw_is_a_near_miss(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    event = load_event("s3_object_created")
    event["detail"]["object"]["key"] = "incoming/loans/x.csv"
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    assert main(["route", str(path)]) == 1
    out = capsys.readouterr().out
    assert "matches no rule" in out
    assert "near miss: DataArrivalRule" in out


def test_a_parameter_override_changes_the_pattern(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    event = load_event("s3_object_created")
    event["detail"]["object"]["key"] = "landing/loans/x.csv"
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    assert main(["route", str(path), "--param", "RawPrefix=landing/"]) == 0
    assert "DataArrivalRule" in capsys.readouterr().out


@pytest.mark.parametrize("content", ["not json", None])
def test_bad_input_is_one_line_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None
) -> None:
    path = tmp_path / "event.json"
    if content is not None:
        path.write_text(content)
    assert main(["route", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("closedloop: ") and len(err.strip().splitlines()) == 1
