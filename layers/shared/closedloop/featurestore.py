"""A model line's feature group in SageMaker Feature Store: its declaration, name and requests.

A line that declares `feature_store.enabled` has one feature group, `<prefix>-<line>` (named like
its model package group, `closedloop.line.LineResources.feature_group`). Its features are the
line's prepared, PII-free output columns except the label (the label is what training joins to
the features; it is never a feature); the record identifier is the column the line names in
`feature_store.record_identifier` (a kept or pseudonymised identifier column); the event time is
the column named in `feature_store.event_time` (an ISO-8601 UTC time in each row), or — when the
line has none — a `event_time` feature the preparation adds: the time the run ingests its rows,
one value per run, recorded in the run's manifest. The offline store (Parquet in S3, Glue table
format) is always on: training builds its dataset from it point-in-time (`pipelines/steps/
dataset.py`); the online store is `feature_store.online_store`.

The preparation job ingests a run's rows after it wrote them (`closedloop/prep/prepare.py`,
`ingest_features`), with what `ingestion_plan` puts into the run's input manifest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, Field

from closedloop.model import Model

if TYPE_CHECKING:
    from closedloop.dataprep.policy import DatasetPolicy

RUN_EVENT_TIME = "event_time"
# Feature Store's feature types: every prepared value is text, numbers are numeric columns.
FEATURE_TYPES = {"numeric": "Fractional"}
RESERVED = frozenset({"is_deleted", "write_time", "api_invocation_time"})


class FeatureStoreSpec(Model):
    """The line's feature group: off unless enabled."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(default=False, description="ingest the prepared rows into the line's feature group")
    record_identifier: str | None = Field(
        default=None,
        description="the prepared column that identifies a record (an identifier column; default: the first "
        "pseudonymised column)",
    )
    event_time: str | None = Field(
        default=None,
        description="a prepared column holding each row's ISO-8601 UTC event time; none: the preparation run's "
        "ingestion time, in an added `event_time` feature",
    )
    online_store: bool = Field(default=False, description="also keep the latest record per identifier online")


def record_identifier(spec: FeatureStoreSpec, policy: DatasetPolicy) -> str:
    """The record identifier's output column: declared, or the first pseudonymised column.

    Raises:
        ValueError: nothing is declared and no column is pseudonymised.
    """
    if spec.record_identifier:
        return spec.record_identifier
    for column in policy.columns.values():
        if column.action == "pseudonymise" and column.rename:
            return column.rename
    raise ValueError("feature_store.record_identifier is required: the line pseudonymises no column")


def check_spec(spec: FeatureStoreSpec, policy: DatasetPolicy) -> None:
    """The declared columns exist among the prepared ones and fit Feature Store's rules.

    Raises:
        ValueError: a declared column is not a prepared column, is the label, or is reserved.
    """
    if not spec.enabled:
        return
    outputs = policy.output_columns()
    identifier = record_identifier(spec, policy)
    for role, column in (("record_identifier", identifier), ("event_time", spec.event_time)):
        if column is not None and (column not in outputs or column == policy.label):
            raise ValueError(f"feature_store.{role} {column!r} must be a prepared column other than the label")
    reserved = sorted(RESERVED.intersection(outputs))
    if reserved:
        raise ValueError(f"columns {reserved} are reserved by Feature Store's offline store")
    if spec.event_time is None and RUN_EVENT_TIME in outputs:
        raise ValueError(f"the line has a column {RUN_EVENT_TIME!r}: declare it as feature_store.event_time")


def feature_definitions(spec: FeatureStoreSpec, policy: DatasetPolicy) -> list[dict[str, str]]:
    """`FeatureDefinitions`: every prepared column but the label, then the run's event time if added."""
    types = {(c.rename or name): c.type for name, c in policy.columns.items() if c.action != "drop"}
    definitions = [
        {"FeatureName": name, "FeatureType": FEATURE_TYPES.get(types[name], "String")}
        for name in policy.output_columns()
        if name != policy.label
    ]
    for definition in definitions:
        if definition["FeatureName"] in (spec.event_time, record_identifier(spec, policy)):
            definition["FeatureType"] = "String"
    if spec.event_time is None:
        definitions.append({"FeatureName": RUN_EVENT_TIME, "FeatureType": "String"})
    return definitions


def build_create_feature_group_request(
    spec: FeatureStoreSpec, policy: DatasetPolicy, *, name: str, offline_s3_uri: str, role_arn: str
) -> dict[str, Any]:
    """The exact CreateFeatureGroup request of a line's feature group (the template declares the same)."""
    request: dict[str, Any] = {
        "FeatureGroupName": name,
        "RecordIdentifierFeatureName": record_identifier(spec, policy),
        "EventTimeFeatureName": spec.event_time or RUN_EVENT_TIME,
        "FeatureDefinitions": feature_definitions(spec, policy),
        "OfflineStoreConfig": {"S3StorageConfig": {"S3Uri": offline_s3_uri}},
        "RoleArn": role_arn,
        "Description": f"closedloop: the prepared, PII-free features of the model line {policy.dataset}",
        "Tags": [
            {"Key": "closedloop:component", "Value": "feature-store"},
            {"Key": "closedloop:model-line", "Value": policy.dataset},
        ],
    }
    if spec.online_store:
        request["OnlineStoreConfig"] = {"EnableOnlineStore": True}
    return request


def ingestion_plan(spec: FeatureStoreSpec, policy: DatasetPolicy, feature_group: str) -> dict[str, Any] | None:
    """What the preparation job needs to ingest a run (the input manifest's `feature_store`), or None."""
    if not spec.enabled:
        return None
    return {
        "feature_group": feature_group,
        "record_identifier": record_identifier(spec, policy),
        "event_time": spec.event_time,
        "event_time_feature": spec.event_time or RUN_EVENT_TIME,
        "features": [d["FeatureName"] for d in feature_definitions(spec, policy)],
        "label": policy.label,
    }
