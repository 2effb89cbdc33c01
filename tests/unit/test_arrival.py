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


@pytest.mark.parametrize(
    ("key", "size", "reason"),
    [("raw/loans/", 0, "folder_marker"), ("raw/", 0, "folder_marker"), ("raw/loans/empty.csv", 0, "empty_object")],
)
def test_folder_markers_and_empty_objects_are_skipped(key: str, size: int, reason: str) -> None:
    skipped = parse(key, size=size)
    assert isinstance(skipped, Skipped) and skipped.reason == reason


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


def test_an_unknown_dataset_is_its_own_error() -> None:
    with pytest.raises(UnknownDatasetError, match="no policy"):
        parse("raw/payroll/x.csv")


def test_another_bucket_is_rejected() -> None:
    event = ObjectCreatedEvent.model_validate(object_created("other-bucket", "raw/loans/x.csv"))
    with pytest.raises(InvalidEventError, match="another bucket"):
        raw_object_from_event(event, data_bucket=BUCKET, raw_prefix="raw/")


def test_unversioned_objects_are_told_apart_by_etag_and_sequencer() -> None:
    first = parse("raw/loans/x.csv", version_id=None, etag="e1")
    second = parse("raw/loans/x.csv", version_id=None, etag="e2")
    assert isinstance(first, RawObject) and isinstance(second, RawObject)
    assert first.identity != second.identity
    assert "etag:e1" in first.identity


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
