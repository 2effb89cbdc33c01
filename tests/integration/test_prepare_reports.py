"""No value from the data in what the preparation script writes besides the prepared data itself.

Quarantine reports, the run's PII report and manifest, its log and its error messages carry counts,
positions, declared column names and reasons. Each test feeds files whose column names are a
person's data (a CSV without its header row, an extra column or JSON key named by an e-mail, a card
number, a phone number or a name) and looks for every such value, and every four characters of
one, in all of it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import boto3
import pytest
from integration.test_prepare_script import read, upload, write_manifest

from closedloop.prep import detectors, prepare
from closedloop_ops import synthetic
from support.leaks import document_texts, leaks
from support.stack import Stack

REASONS = (
    prepare.HEADER_LOOKS_LIKE_DATA,
    prepare.KEYS_LOOK_LIKE_DATA,
    "columns do not match the dataset policy",
    "undeclared PII found",
)


def headless_csv(seed: int) -> tuple[str, list[str]]:
    """A CSV without its header row, and the values its first row (now the header) holds."""
    records = list(synthetic.rows(4, seed=seed))
    first = records[0]
    return synthetic.to_csv(records).split("\n", 1)[1], [first[c] for c in synthetic.PII_COLUMNS]


def extra_column_csv(seed: int, value: str) -> str:
    records = list(synthetic.rows(3, seed=seed))
    lines = synthetic.to_csv(records).splitlines()
    header = lines[0] + "," + json.dumps(value)  # quoted: a name with a comma stays one cell
    return "\n".join([header] + [line + ",x" for line in lines[1:]]) + "\n"


def extra_key_jsonl(seed: int, value: str) -> str:
    records: list[dict[str, Any]] = [dict(r) for r in synthetic.rows(3, seed=seed)]
    records[1][value] = "yes"
    return "".join(json.dumps(r) + "\n" for r in records)


def everything_written(stack: Stack, run_id: str, volatile: list[str]) -> tuple[list[str], list[str]]:
    """(the JSON documents' texts, their raw bodies) in the quarantine bucket and under the prepared prefix."""
    s3 = boto3.client("s3")
    texts: list[str] = []
    bodies: list[str] = []
    places = [(stack.settings.quarantine_bucket, f"loans/{run_id}/"), (stack.data_bucket, f"prepared/loans/{run_id}/")]
    for bucket, prefix in places:
        for listed in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
            if listed["Key"].endswith(".json"):
                body = read(bucket, listed["Key"]).decode()
                bodies.append(body)
                texts += document_texts(json.loads(body), volatile)
    return texts, bodies


def test_no_report_or_log_line_carries_a_value_when_headers_are_data(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    # Given twenty CSV files without a header row, files with an extra column and JSON Lines with an
    # extra key named by an e-mail, a card number, a phone number or a name, and one clean file
    values: list[str] = []
    objects = []
    for seed in range(20):
        body, first_row = headless_csv(300 + seed)
        values += first_row
        objects.append(upload(stack, f"raw/loans/headless-{seed:02d}.csv", body.encode()))
    person = next(synthetic.rows(1, seed=400))
    for kind in ("email", "card_number", "phone", "full_name"):
        value = person[kind]
        values.append(value)
        objects.append(upload(stack, f"raw/loans/extra-{kind}.csv", extra_column_csv(401, value).encode()))
        objects.append(upload(stack, f"raw/loans/extra-{kind}.jsonl", extra_key_jsonl(402, value).encode()))
    clean = list(synthetic.rows(50, seed=403))
    objects.append(upload(stack, "raw/loans/clean.csv", synthetic.to_csv(clean).encode()))
    manifest_uri, run = write_manifest(stack, objects)
    # When the script prepares the run, its log captured
    caplog.set_level(logging.DEBUG, logger="closedloop")
    output = prepare.run(manifest_uri, boto3.client("s3"), boto3.client("secretsmanager"))
    # Then the clean file is prepared and every other one quarantined, each with one of our reasons
    assert (output["prepared_files"], output["quarantined_files"]) == (1, 28)
    reasons = {i["key"]: i.get("reason") for i in output["inputs"]}
    assert all(reasons[f"raw/loans/headless-{seed:02d}.csv"] == prepare.HEADER_LOOKS_LIKE_DATA for seed in range(20))
    assert reasons["raw/loans/extra-email.jsonl"] == prepare.KEYS_LOOK_LIKE_DATA
    assert reasons["raw/loans/extra-full_name.csv"] == "columns do not match the dataset policy"
    assert set(reasons.values()) <= {None, *REASONS}
    # And no value, nor four characters of one, is in a quarantine report, the PII report, the
    # manifest or the log
    # (what S3, the clock and the run's numbering wrote is blanked: `00017-` of a quarantine key is
    # the file's index, not four digits of an IBAN)
    volatile = [run.run_id, *(o.version_id or "" for o in objects), *(o.etag or "" for o in objects)]
    volatile += [i["quarantine_key"] for i in output["inputs"] if i.get("quarantine_key")]
    texts, bodies = everything_written(stack, run.run_id, volatile)
    assert len(bodies) == 28 + 2
    log_lines = [record.getMessage() for record in caplog.records]
    assert log_lines  # the quarantines were logged
    assert leaks(values, texts + log_lines, known=REASONS, whole_texts=bodies) == []


def test_an_unexpected_error_in_the_script_is_told_without_its_message(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a run, and a detector that fails on a value and quotes it (as a library's error may)
    records = list(synthetic.rows(20, seed=404))
    records[3]["notes"] = "call me on " + records[3]["phone"]
    obj = upload(stack, "raw/loans/a.csv", synthetic.to_csv(records).encode())
    manifest_uri, _ = write_manifest(stack, [obj])

    def failing_detect(self: object, text: str) -> list[str]:
        if text.startswith("call me"):
            raise ValueError(f"cannot classify {text!r}")
        return []

    monkeypatch.setattr(detectors.Detector, "detect", failing_detect)
    caplog.set_level(logging.DEBUG, logger="closedloop")
    # When the script runs as the jobs run it
    with pytest.raises(SystemExit) as exited:
        prepare.main(["--manifest", manifest_uri, "--engine", "processing"])
    # Then it fails with the error's type and line (the job's failure reason), never its message
    said = str(exited.value.code)
    assert said.startswith("preparation failed: ValueError at prepare.py line ")
    log_lines = [record.getMessage() for record in caplog.records]
    assert leaks([records[3]["phone"], records[3]["notes"]], [said, *log_lines]) == []
