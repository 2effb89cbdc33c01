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
    # And the near miss names the field that failed, and only that one
    assert (
        'near miss: DataArrivalRule: same source and detail-type, but detail.object.key is not [{"prefix": "raw/"}]'
        in out
    )
    assert "detail.bucket.name" not in out


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


@pytest.mark.parametrize(
    ("sample", "rule"), [("start_data_prep_sqs", "DataArrivalRule"), ("deploy_model_sqs", "DeployModelRule")]
)
def test_an_sqs_shaped_sample_is_routed_by_the_event_inside(
    sample: str, rule: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the SQS batch a route's function receives is routed
    code = main(["route", str(EVENTS / f"{sample}.json"), "--json"])
    # Then the EventBridge event in its body is, and the answer says what carried it
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and [m["rule"] for m in report["matches"]] == [rule]
    assert report["envelope"].startswith("an SQS batch of 1 record(s)")


def test_a_scheduler_input_and_a_classic_s3_notification_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A Scheduler target input: no rule routes it
    assert main(["route", str(EVENTS / "drift_monitor_schedule.json")]) == 1
    assert capsys.readouterr().out.startswith("an EventBridge Scheduler target input: no rule routes it")
    # A classic S3 notification (Records[]), AWS's own sample shape
    classic = tmp_path / "classic.json"
    classic.write_text(json.dumps({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "s3": {}}]}))
    assert main(["route", str(classic)]) == 1
    assert capsys.readouterr().out.startswith("not an EventBridge event: a classic S3 notification")


def test_the_transformed_template_is_remembered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an empty cache: the first route transforms the template and stores it
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert main(["route", str(EVENTS / "alarm_state_change.json")]) == 0
    first = capsys.readouterr().out
    assert len(list((tmp_path / "closedloop").glob("template-*.json"))) == 1

    # When the next route runs, the SAM translator is not called again, and the answer is the same
    def no_transform(*_: object, **__: object) -> None:
        raise AssertionError("the template was transformed again")

    monkeypatch.setattr("closedloop_ops.routing.load_template", no_transform)
    assert main(["route", str(EVENTS / "alarm_state_change.json")]) == 0
    assert capsys.readouterr().out == first
