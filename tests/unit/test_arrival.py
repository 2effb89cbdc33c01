"""Key validation, dedupe and grouping of raw uploads (pure, no AWS)."""

from __future__ import annotations

import pytest

from closedloop.dataprep.arrival import DataPrepRun, RawObject, Skipped, plan_runs, raw_object_from_event
from closedloop.errors import InvalidEventError, UnknownDatasetError
from closedloop.events.s3 import ObjectCreatedEvent
from support.events import object_created

BUCKET = "data-bucket"


def parse(key: str, **kwargs: object) -> RawObject | Skipped:
    event = ObjectCreatedEvent.model_validate(object_created(BUCKET, key, **kwargs))  # type: ignore[arg-type]
    return raw_object_from_event(event, data_bucket=BUCKET, raw_prefix="raw/")


def test_a_raw_csv_becomes_a_raw_object_of_its_dataset() -> None:
    obj = parse("raw/loans/2026/11/applications.csv", version_id="abc")
    assert isinstance(obj, RawObject)
    assert (obj.dataset, obj.format, obj.version_id) == ("loans", "csv", "abc")
    assert obj.identity == f"{BUCKET}/raw/loans/2026/11/applications.csv#abc"


def test_jsonl_files_are_accepted() -> None:
    obj = parse("raw/loans/batch.jsonl")
    assert isinstance(obj, RawObject) and obj.format == "jsonl"


def test_unicode_file_names_are_kept_exactly() -> None:
    obj = parse("raw/loans/Zürich ärende 2026.csv")
    assert isinstance(obj, RawObject) and obj.key == "raw/loans/Zürich ärende 2026.csv"


@pytest.mark.parametrize("key", ["raw/loans/", "raw/"])
def test_folder_markers_are_skipped(key: str) -> None:
    skipped = parse(key, size=0)
    assert isinstance(skipped, Skipped) and skipped.reason == "folder_marker"


def test_an_empty_file_is_a_raw_object_to_quarantine_not_a_skip() -> None:
    # Given a 0-byte upload of a declared dataset
    obj = parse("raw/loans/empty.csv", size=0)
    # Then it is an object (it goes to quarantine with a report), not something to ignore
    assert isinstance(obj, RawObject) and obj.is_empty and obj.key == "raw/loans/empty.csv"


def test_a_key_ending_in_slash_that_holds_data_is_refused_not_skipped() -> None:
    # Given an object whose key looks like a folder but which has bytes in it
    with pytest.raises(InvalidEventError, match="ends with '/' but the object holds data"):
        parse("raw/loans/", size=10)


@pytest.mark.parametrize(
    "key",
    [
        "prepared/loans/x.csv",  # outside raw/
        "raw/x.csv",  # no dataset folder
        "raw/Loans/x.csv",  # dataset is not a lower-case slug
        "raw/lóans/x.csv",  # unicode dataset name
        "raw/loans/../secrets/x.csv",  # path traversal
        "raw/loans/./x.csv",
        "raw/loans//x.csv",
        "raw/loans/x\u0000.csv",  # control character
        "raw/loans/x\u202e.csv",  # bidi override (format character)
        "raw/loans/" + "a" * 1100 + ".csv",  # longer than S3 allows
        "raw/loans/report.pdf",  # unsupported type
    ],
)
def test_bad_keys_are_clear_errors(key: str) -> None:
    with pytest.raises(InvalidEventError) as raised:
        parse(key)
    assert raised.value.as_dict()["error"] in {"InvalidEvent"}
    assert "\u0000" not in raised.value.message


def test_an_unsupported_file_type_names_the_file_and_the_dataset() -> None:
    with pytest.raises(InvalidEventError) as raised:
        parse("raw/loans/2026/report.pdf")
    assert raised.value.message == "unsupported file type for dataset loans: report.pdf"
    assert raised.value.as_dict()["key"] == "raw/loans/2026/report.pdf"


def test_an_unknown_dataset_is_its_own_error() -> None:
    with pytest.raises(UnknownDatasetError, match="no model line"):
        parse("raw/payroll/x.csv")


def test_another_bucket_is_rejected() -> None:
    event = ObjectCreatedEvent.model_validate(object_created("other-bucket", "raw/loans/x.csv"))
    with pytest.raises(InvalidEventError, match="another bucket"):
        raw_object_from_event(event, data_bucket=BUCKET, raw_prefix="raw/")


@pytest.mark.parametrize("version_id", [None, "null"], ids=["no-version-id", "null-version-id"])
def test_an_object_without_a_version_id_is_refused_with_what_to_fix(version_id: str | None) -> None:
    # Given an event of an unversioned bucket (EventBridge omits version-id; S3 elsewhere writes "null")
    # When it is validated, then it is refused: no run could name the exact input it prepared
    with pytest.raises(InvalidEventError) as raised:
        parse("raw/loans/x.csv", version_id=version_id)
    error = raised.value.as_dict()
    assert error["error"] == "InvalidEvent" and "no version id" in error["message"]
    assert error["fix"].startswith("enable versioning on the data bucket")


@pytest.mark.parametrize(
    "key",
    [
        "raw/loans/2026 11 27/applications final.csv",  # spaces
        "raw/loans/c++/a+b.csv",  # plus signs
        "raw/loans/100%/50%25 done.csv",  # percent signs, one that looks like an escape
        "raw/loans/Zürich/ärende 😀.jsonl",  # non-ASCII, outside the BMP too
        "raw/loans/dt=2026-11-27/a&b;c:d,e@f$g?h.csv",  # reserved characters
    ],
)
def test_keys_are_url_decoded_to_the_real_key(key: str) -> None:
    # Given the event S3 writes for an object with this key (its key URL-encoded)
    event = ObjectCreatedEvent.model_validate(object_created(BUCKET, key))
    assert event.detail.object.key != key
    # When it is validated
    obj = raw_object_from_event(event, data_bucket=BUCKET, raw_prefix="raw/")
    # Then the object is named by its real key, in the identity too
    assert isinstance(obj, RawObject) and obj.key == key
    assert obj.identity == f"{BUCKET}/{key}#v1"


def test_an_encoded_control_character_is_refused_after_decoding() -> None:
    event = object_created(BUCKET, "raw/loans/x.csv")
    event["detail"]["object"]["key"] = "raw/loans/x%00.csv"
    with pytest.raises(InvalidEventError, match="control or format characters"):
        raw_object_from_event(ObjectCreatedEvent.model_validate(event), data_bucket=BUCKET, raw_prefix="raw/")


def _obj(key: str, version: str = "v1", dataset: str = "loans") -> RawObject:
    return RawObject(bucket=BUCKET, key=key, dataset=dataset, format="csv", size=1, etag="e", version_id=version)


def test_plan_dedupes_by_identity_and_groups_by_dataset() -> None:
    # Given duplicates of one version, two versions of one key, and two datasets
    objects = [
        _obj("raw/loans/a.csv"),
        _obj("raw/loans/a.csv"),
        _obj("raw/loans/a.csv", version="v2"),
        _obj("raw/churn/b.csv", dataset="churn"),
    ]
    # When planned
    runs = plan_runs(objects)
    # Then one run per dataset, each version once
    assert [(run.dataset, len(run.objects)) for run in runs] == [("churn", 1), ("loans", 2)]


def test_run_ids_depend_on_content_only() -> None:
    a, b = _obj("raw/loans/a.csv"), _obj("raw/loans/b.csv")
    assert DataPrepRun(dataset="loans", objects=(a, b)).run_id == DataPrepRun(dataset="loans", objects=(b, a)).run_id
    assert DataPrepRun(dataset="loans", objects=(a,)).run_id != DataPrepRun(dataset="loans", objects=(a, b)).run_id
    assert len(DataPrepRun(dataset="loans", objects=(a,)).run_id) == 16
