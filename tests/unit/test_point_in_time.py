"""The dataset step's point-in-time join and the line's feature group declaration, without AWS."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from closedloop.errors import DatasetPolicyError
from closedloop.featurestore import FeatureStoreSpec, build_create_feature_group_request, ingestion_plan
from closedloop.line import load_line, parse_line
from closedloop.prep import prepare
from support.steps import load_step

dataset = load_step("dataset")


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 5, 1, hour, minute, tzinfo=UTC)


def version(
    record_id: str, event: str, value: float | None, invoked: datetime, deleted: bool = False
) -> dict[str, Any]:
    return {
        "id": record_id,
        "t": event,
        "x": value,
        "api_invocation_time": invoked,
        "write_time": invoked,
        "is_deleted": deleted,
    }


def join(labels: list[tuple[str, str]], records: list[dict[str, Any]], **options: Any) -> list[Any]:
    parsed = [(record_id, dataset.event_seconds(when)) for record_id, when in labels]
    joined, _ = dataset.point_in_time_join(parsed, records, "id", "t", **options)
    return [None if record is None else record["x"] for record in joined]


def test_the_latest_value_at_or_before_the_label_time_is_used() -> None:
    records = [
        version("a", "2026-05-01T10:00:00Z", 1.0, at(10)),
        version("a", "2026-05-01T12:00:00Z", 2.0, at(12)),
    ]
    assert join([("a", "2026-05-01T09:59:59Z")], records) == [None]
    assert join([("a", "2026-05-01T10:00:00Z")], records) == [1.0]  # at the label time counts
    assert join([("a", "2026-05-01T11:00:00Z")], records) == [1.0]
    assert join([("a", "2026-05-01T12:00:00Z")], records) == [2.0]


def test_late_arriving_data_is_used_for_the_time_it_was_in_effect() -> None:
    records = [
        version("a", "2026-05-01T10:00:00Z", 1.0, at(10)),
        version("a", "2026-05-01T10:30:00Z", 3.0, at(15)),  # written hours later, in effect at 10:30
    ]
    assert join([("a", "2026-05-01T11:00:00Z")], records) == [3.0]
    # unless the dataset is built as of before it was written
    as_of = dataset.event_seconds("2026-05-01T14:00:00Z")
    assert join([("a", "2026-05-01T11:00:00Z")], records, written_before=as_of) == [1.0]


def test_a_rewrite_of_the_same_event_time_wins_by_invocation_time() -> None:
    records = [
        version("a", "2026-05-01T10:00:00Z", 9.0, at(11)),
        version("a", "2026-05-01T10:00:00Z", 1.0, at(10)),
    ]
    assert join([("a", "2026-05-01T10:00:00Z")], records) == [9.0]


def test_a_delete_hides_the_record_from_its_event_time_on() -> None:
    records = [
        version("a", "2026-05-01T10:00:00Z", 1.0, at(10)),
        version("a", "2026-05-01T11:00:00Z", None, at(11), deleted=True),
        version("a", "2026-05-01T12:00:00Z", 4.0, at(12)),  # put again after the delete
    ]
    labels = [("a", "2026-05-01T10:30:00Z"), ("a", "2026-05-01T11:30:00Z"), ("a", "2026-05-01T12:30:00Z")]
    assert join(labels, records) == [1.0, None, 4.0]
    _, counts = dataset.point_in_time_join([(r, dataset.event_seconds(t)) for r, t in labels], records, "id", "t")
    assert (counts["joined"], counts["deleted"], counts["no_feature_record"]) == (2, 1, 0)


def test_values_are_written_as_the_prepared_csv_writes_them() -> None:
    assert [dataset.as_text(v) for v in (None, 3.0, 2.5, "x", 7)] == ["", "3", "2.5", "x", "7"]


# -- the line's declaration ---------------------------------------------------------------------


def test_the_feature_group_request_leaves_out_the_label_and_adds_the_run_time() -> None:
    line = load_line("loans")
    spec = FeatureStoreSpec(enabled=True, record_identifier="application_id", online_store=True)
    request = build_create_feature_group_request(
        spec, line, name="closedloop-loans", offline_s3_uri="s3://data/feature-store", role_arn="arn:role"
    )
    names = [d["FeatureName"] for d in request["FeatureDefinitions"]]
    assert "approved" not in names and names[-1] == "event_time"
    assert names[:-1] == [c for c in line.output_columns() if c != "approved"]
    types = {d["FeatureName"]: d["FeatureType"] for d in request["FeatureDefinitions"]}
    assert (types["income"], types["purpose"], types["application_id"]) == ("Fractional", "String", "String")
    assert request["RecordIdentifierFeatureName"] == "application_id"
    assert request["OnlineStoreConfig"] == {"EnableOnlineStore": True}
    plan = ingestion_plan(spec, line, "closedloop-loans")
    assert plan is not None and plan["features"] == names and plan["event_time"] is None


def test_the_record_identifier_defaults_to_the_pseudonymised_column() -> None:
    line = load_line("churn")
    plan = ingestion_plan(FeatureStoreSpec(enabled=True), line, "g")
    assert plan is not None and plan["record_identifier"] == "subscriber_id"


def test_a_line_cannot_name_the_label_or_an_unknown_column() -> None:
    document = load_line("loans").model_dump(mode="json", by_alias=True, exclude_none=True)
    for wrong in ({"record_identifier": "approved"}, {"event_time": "nope"}):
        text = json.dumps({**document, "feature_store": {"enabled": True, **wrong}})
        with pytest.raises(DatasetPolicyError, match="feature_store"):
            parse_line(text, source="loans.json")


def test_feature_records_leave_out_empty_values_and_carry_the_run_time() -> None:
    plan = {
        "record_identifier": "id",
        "event_time": None,
        "event_time_feature": "event_time",
        "features": ["id", "x", "event_time"],
    }
    rows = [{"id": "a", "x": "", "label": "1"}, {"id": "", "x": "2", "label": "0"}]
    records = list(prepare.feature_records(iter(rows), plan, "2026-05-01T10:00:00.000Z"))
    assert records[0] == [
        {"FeatureName": "id", "ValueAsString": "a"},
        {"FeatureName": "event_time", "ValueAsString": "2026-05-01T10:00:00.000Z"},
    ]
    assert records[1] is None  # no record identifier: not ingested
    assert prepare.event_time_now(datetime(2026, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)) == "2026-05-01T10:00:00.123Z"
