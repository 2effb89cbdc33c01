"""The capture reader on SageMaker's real format, and the bounded sketches it feeds."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from closedloop.drift.baseline import Baseline
from closedloop.drift.capture import CaptureFileSkipped, CaptureReadInterrupted, read_capture
from closedloop.drift.sketch import MAX_NEW_CATEGORIES, OTHER, DriftPlan
from closedloop_ops import synthetic
from support.capture import FEATURES, baseline_document, capture_file, capture_record, score

SAMPLE = next((Path(__file__).parents[1] / "data" / "capture").rglob("*.jsonl"))
AT = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.fixture(scope="module")
def plan() -> DriftPlan:
    return DriftPlan(Baseline.model_validate(baseline_document(n=1500)))


def test_the_sample_file_is_read_in_any_chunking() -> None:
    # Given the real-format sample (CSV and BASE64 records, one without the protected attribute)
    data = SAMPLE.read_bytes()
    # When it is read whole, or in 7-byte chunks that cut lines and UTF-8 anywhere
    whole = list(read_capture([data], expected_bytes=len(data)))
    pieces = list(read_capture(chunks(data, 7), expected_bytes=len(data)))
    # Then the same four requests come out, BASE64 decoded to the same CSV text
    assert whole == pieces
    assert len(whole) == 4
    assert [len(r.inputs.splitlines()) for r in whole] == [1, 3, 2, 1]
    assert all(r.outputs is not None for r in whole)
    raw = [json.loads(line) for line in data.splitlines()]
    assert raw[2]["captureData"]["endpointInput"]["encoding"] == "BASE64"
    assert whole[2].inputs == base64.b64decode(raw[2]["captureData"]["endpointInput"]["data"]).decode()
    assert whole[3].inputs.count(",") == len(FEATURES) - 1  # no protected attribute column


def test_the_sample_file_counts_into_a_sketch(plan: DriftPlan) -> None:
    sketch = plan.new_sketch()
    for request in read_capture([SAMPLE.read_bytes()]):
        assert sketch.add_request(request.inputs, request.outputs)
    assert (sketch.rows, sketch.requests, sketch.predictions) == (7, 4, 7)
    assert sum(sketch.group_rows.values()) == 6  # the last request carries no group


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"\n \n\n", "empty"),
        (SAMPLE.read_bytes()[:-40], "truncated"),
        (b'{"captureData": {"endpointInput": {"data": "1,2", "encoding": "JSON"}}}\n', "unknown-encoding"),
        (b'{"captureData": {"endpointInput": {"data": "1,2", "encoding": "CSV"}}}\n{"capture', "truncated"),
        (b'not json\n{"captureData": {"endpointInput": {"data": "1,2", "encoding": "CSV"}}}\n', "malformed-record"),
        (b'{"eventVersion": "0"}\n', "malformed-record"),
        (b'{"captureData": {"endpointInput": {"data": "%%%", "encoding": "BASE64"}}}\n', "malformed-record"),
        (
            b'{"captureData": {"endpointInput": {"observedContentType": "application/json",'
            b' "data": "{}", "encoding": "CSV"}}}\n',
            "unsupported-content-type",
        ),
    ],
    ids=[
        "zero-bytes",
        "blank-lines",
        "cut-off",
        "json-encoding",
        "cut-after-good",
        "garbage-line",
        "no-capture",
        "bad-b64",
        "json-type",
    ],
)
def test_unusable_files_are_skipped_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(CaptureFileSkipped) as caught:
        list(read_capture(chunks(data, 64) if data else [], expected_bytes=len(data)))
    assert caught.value.reason == reason
    assert caught.value.detail


def test_a_body_shorter_than_the_object_is_unread_data_not_a_bad_file() -> None:
    data = SAMPLE.read_bytes()
    # Given a body that stopped early (the connection dropped mid-file)
    with pytest.raises(CaptureReadInterrupted):
        list(read_capture([data[:-40]], expected_bytes=len(data)))


def test_file_sketches_merge_into_what_one_pass_counts(plan: DriftPlan) -> None:
    # Given 600 rows in three capture files
    rows = list(synthetic.rows(600, seed=4))
    files = [capture_file(rows[i : i + 200], start=AT, rows_per_request=4) for i in range(0, 600, 200)]
    # When each file is counted on its own and merged, and when everything is counted at once
    merged = plan.new_sketch()
    for data in files:
        part = plan.new_sketch()
        for request in read_capture([data]):
            part.add_request(request.inputs, request.outputs)
        merged.merge(part)
    single = plan.new_sketch()
    for request in read_capture([b"".join(files)]):
        single.add_request(request.inputs, request.outputs)
    # Then the reports are identical
    assert plan.report(merged) == plan.report(single)
    assert plan.report(merged).records == 600


def test_malformed_rows_are_counted_and_left_out(plan: DriftPlan) -> None:
    rows = list(synthetic.rows(3, seed=5))
    good = capture_record(rows, at=AT)["captureData"]
    sketch = plan.new_sketch()
    inputs = good["endpointInput"]["data"]
    # a row of the wrong width is left out; the request's other rows count
    assert sketch.add_request(inputs + "1,2,3\n", good["endpointOutput"]["data"] + "\n0.5")
    assert (sketch.rows, sketch.invalid_rows) == (3, 1)
    # scores that do not match the rows one to one leave the whole request out
    assert not sketch.add_request(inputs, "0.5")
    assert not sketch.add_request(inputs, "a\nb\nc")
    assert sketch.invalid_requests == 2
    # a request captured without its response still counts for the features
    assert sketch.add_request(inputs, None)
    assert (sketch.rows, sketch.predictions) == (6, 3)


def test_missing_and_unparsable_numbers_count_as_missing(plan: DriftPlan) -> None:
    row = next(synthetic.rows(1, seed=6))
    cells = [row[f] for f in FEATURES]
    cells[FEATURES.index("income")] = ""
    cells[FEATURES.index("age")] = "n/a"
    sketch = plan.new_sketch()
    sketch.add_request(",".join(cells), f"{score(row):.4f}")
    report = plan.report(sketch)
    by_name = {f.feature: f for f in report.features}
    assert (by_name["income"].missing, by_name["income"].values) == (1, 0)
    assert by_name["age"].missing == 1
    assert by_name["income"].ks is None  # nothing to compare
    assert by_name["loan_amount"].values == 1


def test_category_counts_stay_bounded_however_many_new_values_arrive(plan: DriftPlan) -> None:
    # Given traffic where the purpose column is a fresh value on every row (e.g. free text)
    rows = list(synthetic.rows(2000, seed=7))
    sketch = plan.new_sketch()
    other = plan.new_sketch()
    for i, row in enumerate(rows):
        target = sketch if i % 2 else other
        target.add_request(",".join(f"junk-{i}" if f == "purpose" else row[f] for f in FEATURES), f"{score(row):.4f}")
    sketch.merge(other)
    # Then the counts hold the known categories, a bounded number of new ones and one overflow
    purpose = plan.categorical[[c.name for c in plan.categorical].index("purpose")]
    counts = sketch.categorical_counts[plan.categorical.index(purpose)]
    assert len(counts) <= len(purpose.expected) + MAX_NEW_CATEGORIES + 1
    assert sum(counts.values()) == 2000
    assert counts[OTHER] > 0
    # And the drift of that column is enormous
    assert next(f for f in plan.report(sketch).features if f.feature == "purpose").psi > 5
