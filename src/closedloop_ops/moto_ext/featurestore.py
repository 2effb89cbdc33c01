"""SageMaker Feature Store's runtime and offline store (moto 5.2.x has CreateFeatureGroup only).

What AWS does, and what this module reproduces against moto's feature groups:

* `DescribeFeatureGroup` of an unknown group is `ResourceNotFound` (moto fails with a KeyError).
* `CreateFeatureGroup` keeps the `OnlineStoreConfig` (moto drops it) and answers
  `DescribeFeatureGroup` with it; the offline store is optional (moto fails without one); the
  record identifier and event time must be defined features; `ResolvedOutputS3Uri` is
  `<S3Uri>/<account>/sagemaker/<region>/offline-store/<group>-<creation epoch>/data` (moto leaves
  out `sagemaker/`) and the Glue table `<group with _>_<creation epoch>`, the same epoch.
* featurestore-runtime (`featurestore-runtime.sagemaker.<region>.amazonaws.com`, signed as
  `sagemaker`): `PutRecord`, `GetRecord`, `BatchGetRecord`, `DeleteRecord`. A record must carry
  the record identifier and the event time (ISO-8601 `yyyy-MM-ddTHH:mm:ss[.SSS]Z` for a String
  event time, seconds since the epoch for a Fractional one), only defined features, and values of
  the features' types. The online store (when enabled) keeps per record identifier the record
  with the latest event time: an older one goes to the offline store only. `GetRecord` of an
  unknown or deleted record answers without a `Record`, as AWS does. `DeleteRecord` soft-deletes
  (or, `HardDelete`, removes) the online record when its `EventTime` is later than the online
  one's, and always appends the deleted-record marker to the offline store (same identifier,
  `is_deleted` true, the delete's event time, the other features null) — except a `HardDelete`
  that is not later, which is a ValidationError and writes nothing.
* The offline store (Glue table format) as Feature Store writes it: Parquet files under the
  group's `ResolvedOutputS3Uri`, partitioned by event time into
  `year=YYYY/month=MM/day=DD/hour=HH/<latest event time in the file, yyyyMMddTHHmmssZ>_<16
  random alphanumerics>.parquet`, each row the record's features (String → string, Integral →
  int64, Fractional → double) plus `write_time`, `api_invocation_time` (timestamps, UTC) and
  `is_deleted` ("Amazon SageMaker Feature Store offline store data format", SageMaker developer
  guide). AWS buffers and writes within 15 minutes; here records wait in a buffer per group and
  are written when 1,000 are waiting, when `flush_offline_store()` is called, and — so that a
  reader never misses what was put before it looked — before any S3 listing of a prefix that
  overlaps the group's offline store. A reader that lists the offline store (the only way to find
  its files) therefore reads every record put before it listed.

Routing: in process (`mock_aws`), the featurestore-runtime host is added to moto's URL index and
to the SageMaker backend's URL bases; on the moto server, requests signed `sagemaker` reach the
SageMaker app, whose URL map gets the runtime's paths (`install()` must run before the server
answers its first SageMaker request, as `closedloop_ops.moto_ext.install` does).
"""

from __future__ import annotations

import io
import json
import re
import secrets
import string
import threading
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from moto import backend_index
from moto.core.exceptions import JsonRESTError
from moto.core.responses import BaseResponse
from moto.s3.models import S3Backend, s3_backends
from moto.sagemaker import models as sm_models
from moto.sagemaker import urls as sm_urls
from moto.sagemaker.responses import SageMakerResponse
from moto.sagemaker.utils import arn_formatter

RUNTIME_HOST = r"https?://featurestore-runtime\.sagemaker\.(.+)\.amazonaws\.com"
OFFLINE_BATCH_RECORDS = 1000
STORES = ("OnlineStore", "OfflineStore")
ISO_EVENT_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?Z$")
FEATURE_NAME = re.compile(r"^[a-zA-Z0-9]([-_]*[a-zA-Z0-9]){0,63}$")
RESERVED_NAMES = frozenset({"is_deleted", "write_time", "api_invocation_time"})
_ALPHANUMERIC = string.ascii_letters + string.digits

_lock = threading.RLock()
_pending: dict[int, sm_models.FeatureGroup] = {}  # groups with records waiting for the offline store


class FeatureStoreValidationError(JsonRESTError):
    code = 400

    def __init__(self, message: str) -> None:
        super().__init__("ValidationError", message)


class FeatureStoreResourceNotFoundError(JsonRESTError):
    code = 404

    def __init__(self, message: str) -> None:
        super().__init__("ResourceNotFound", message)


# -- the feature group's state -----------------------------------------------------------------


def _state(group: sm_models.FeatureGroup) -> dict[str, Any]:
    """The runtime state moto's feature group object carries: online records and the offline buffer."""
    state: dict[str, Any] | None = getattr(group, "closedloop_store", None)
    if state is None:
        state = {"online": {}, "buffer": []}
        group.closedloop_store = state  # type: ignore[attr-defined]
    return state


def _online_enabled(group: sm_models.FeatureGroup) -> bool:
    config = getattr(group, "closedloop_online_config", None) or {}
    return bool(config.get("EnableOnlineStore"))


def _offline_enabled(group: sm_models.FeatureGroup) -> bool:
    return bool(group.offline_store_config)


def _find_group(account: str, region: str, name_or_arn: str) -> sm_models.FeatureGroup:
    backend = sm_models.sagemaker_backends[account][region]
    name = name_or_arn.rsplit("/", 1)[-1] if name_or_arn.startswith("arn:") else name_or_arn
    arn = arn_formatter("feature-group", name.lower(), account, region)
    group = backend.feature_groups.get(arn)
    if group is None:
        raise FeatureStoreResourceNotFoundError(f"Resource Not Found: FeatureGroup {name} does not exist.")
    return group


# -- CreateFeatureGroup / DescribeFeatureGroup --------------------------------------------------


def _create_feature_group(self: SageMakerResponse) -> Any:
    name = self._get_param("FeatureGroupName")
    definitions = self._get_param("FeatureDefinitions") or []
    record_id = self._get_param("RecordIdentifierFeatureName")
    event_time = self._get_param("EventTimeFeatureName")
    online = self._get_param("OnlineStoreConfig")
    offline = self._get_param("OfflineStoreConfig")
    types = {d.get("FeatureName"): d.get("FeatureType") for d in definitions}
    for feature in types:
        if not FEATURE_NAME.match(feature or "") or feature in RESERVED_NAMES:
            raise FeatureStoreValidationError(f"Feature name {feature!r} is not allowed.")
    if record_id not in types:
        raise FeatureStoreValidationError("The RecordIdentifierFeatureName must be one of the FeatureDefinitions.")
    if event_time not in types or types[event_time] not in ("String", "Fractional"):
        raise FeatureStoreValidationError(
            "The EventTimeFeatureName must be a FeatureDefinition of type String or Fractional."
        )
    if not (online or {}).get("EnableOnlineStore") and not offline:
        raise FeatureStoreValidationError("At least one of OnlineStoreConfig and OfflineStoreConfig is required.")
    placeholder = {"S3StorageConfig": {"S3Uri": ""}}
    arn = self.sagemaker_backend.create_feature_group(
        feature_group_name=name,
        record_identifier_feature_name=record_id,
        event_time_feature_name=event_time,
        feature_definitions=definitions,
        offline_store_config=json.loads(json.dumps(offline)) if offline else placeholder,
        role_arn=self._get_param("RoleArn"),
        tags=self._get_param("Tags"),
    )
    group = self.sagemaker_backend.feature_groups[arn]
    epoch = int(group.creation_time.timestamp())
    if offline:
        config = json.loads(json.dumps(offline))
        uri = config["S3StorageConfig"]["S3Uri"].rstrip("/")
        config["S3StorageConfig"]["ResolvedOutputS3Uri"] = (
            f"{uri}/{self.current_account}/sagemaker/{self.region}/offline-store/{name}-{epoch}/data"
        )
        config.setdefault(
            "DataCatalogConfig",
            {
                "TableName": f"{name.replace('-', '_')}_{epoch}",
                "Catalog": "AwsDataCatalog",
                "Database": "sagemaker_featurestore",
            },
        )
        group.offline_store_config = config
    else:
        group.offline_store_config = None  # type: ignore[assignment]
    group.closedloop_online_config = online  # type: ignore[attr-defined]
    return json.dumps({"FeatureGroupArn": arn})


def _describe_feature_group(self: SageMakerResponse) -> Any:
    group = _find_group(self.current_account, self.region, self._get_param("FeatureGroupName"))
    return json.dumps(group.describe(), default=lambda value: value.timestamp())


_original_describe = sm_models.FeatureGroup.describe


def _describe(self: sm_models.FeatureGroup) -> dict[str, Any]:
    described: dict[str, Any] = _original_describe(self)
    if self.offline_store_config:
        described["OfflineStoreStatus"] = {"Status": "Active"}
    else:
        described.pop("OfflineStoreConfig", None)
    online = getattr(self, "closedloop_online_config", None)
    if online:
        described["OnlineStoreConfig"] = online
    return described


# -- records ------------------------------------------------------------------------------------


def _event_seconds(value: str, feature_type: str) -> float:
    """A record's event time as seconds since the epoch; raises ValidationError when malformed."""
    if feature_type == "Fractional":
        try:
            return float(value)
        except ValueError:
            raise FeatureStoreValidationError("The event time is not a number of seconds.") from None
    if not ISO_EVENT_TIME.match(value):
        raise FeatureStoreValidationError(
            "The event time must be ISO-8601 as yyyy-MM-dd'T'HH:mm:ssZ or yyyy-MM-dd'T'HH:mm:ss.SSSZ."
        )
    try:
        return datetime.fromisoformat(value[:-1] + "+00:00").timestamp()
    except ValueError:
        raise FeatureStoreValidationError("The event time is not a valid date and time.") from None


def _typed(value: str | None, feature_type: str, name: str) -> Any:
    if value is None:
        return None
    try:
        if feature_type == "Integral":
            return int(value)
        if feature_type == "Fractional":
            return float(value)
    except ValueError:
        raise FeatureStoreValidationError(f"The value of feature {name} is not of type {feature_type}.") from None
    return value


def _validated_record(group: sm_models.FeatureGroup, record: list[dict[str, Any]]) -> dict[str, str]:
    types = {d["FeatureName"]: d["FeatureType"] for d in group.feature_definitions}
    values: dict[str, str] = {}
    for feature in record:
        name = feature.get("FeatureName")
        if name not in types:
            raise FeatureStoreValidationError(f"Feature {name} is not defined in the FeatureGroup.")
        if name in values:
            raise FeatureStoreValidationError(f"Feature {name} appears more than once in the record.")
        if "ValueAsString" not in feature:
            raise FeatureStoreValidationError(f"Feature {name} has no ValueAsString.")
        value = str(feature["ValueAsString"])
        _typed(value, types[name], name)
        values[name] = value
    for required in (group.record_identifier_feature_name, group.event_time_feature_name):
        if not values.get(required):
            raise FeatureStoreValidationError(f"The record must contain the feature {required}.")
    return values


def _targets(value: Any) -> tuple[str, ...]:
    if not value:
        return STORES
    targets = tuple(value if isinstance(value, list) else [value])
    if any(target not in STORES for target in targets):
        raise FeatureStoreValidationError("TargetStores may name OnlineStore and OfflineStore only.")
    return targets


def _buffer(group: sm_models.FeatureGroup, values: dict[str, str | None], deleted: bool, invoked: datetime) -> None:
    state = _state(group)
    state["buffer"].append({"values": values, "is_deleted": deleted, "api_invocation_time": invoked})
    _pending[id(group)] = group
    if len(state["buffer"]) >= OFFLINE_BATCH_RECORDS:
        _write_offline(group)


def put_record(group: sm_models.FeatureGroup, record: list[dict[str, Any]], target_stores: Any = None) -> None:
    """PutRecord's effect on the group's stores (validated as AWS validates it)."""
    values = _validated_record(group, record)
    event_type = _types(group)[group.event_time_feature_name]
    event = _event_seconds(values[group.event_time_feature_name], event_type)
    targets = _targets(target_stores)
    if target_stores and "OnlineStore" in targets and not _online_enabled(group):
        raise FeatureStoreValidationError("The FeatureGroup has no OnlineStore.")
    if target_stores and "OfflineStore" in targets and not _offline_enabled(group):
        raise FeatureStoreValidationError("The FeatureGroup has no OfflineStore.")
    now = datetime.now(UTC)
    with _lock:
        if "OnlineStore" in targets and _online_enabled(group):
            online = _state(group)["online"]
            record_id = values[group.record_identifier_feature_name]
            current = online.get(record_id)
            if current is None or event >= current["event_time"]:
                online[record_id] = {"values": values, "event_time": event, "deleted": False}
        if "OfflineStore" in targets and _offline_enabled(group):
            _buffer(group, dict(values), False, now)


def delete_record(
    group: sm_models.FeatureGroup, record_id: str, event_time: str, mode: str, target_stores: Any = None
) -> None:
    """DeleteRecord's effect: the online record deleted if the delete is later; the offline marker."""
    if mode not in ("SoftDelete", "HardDelete"):
        raise FeatureStoreValidationError("DeletionMode must be SoftDelete or HardDelete.")
    event = _event_seconds(event_time, _types(group)[group.event_time_feature_name])
    targets = _targets(target_stores)
    now = datetime.now(UTC)
    with _lock:
        if "OnlineStore" in targets and _online_enabled(group):
            online = _state(group)["online"]
            current = online.get(record_id)
            later = current is None or event > current["event_time"]
            if mode == "HardDelete" and not later:
                raise FeatureStoreValidationError(
                    "EventTime of the delete must be later than the existing record's EventTime."
                )
            if current is not None and later:
                if mode == "HardDelete":
                    del online[record_id]
                else:
                    online[record_id] = {**current, "event_time": event, "deleted": True}
        if "OfflineStore" in targets and _offline_enabled(group):
            marker: dict[str, str | None] = {d["FeatureName"]: None for d in group.feature_definitions}
            marker[group.record_identifier_feature_name] = record_id
            marker[group.event_time_feature_name] = event_time
            _buffer(group, marker, True, now)


def get_record(group: sm_models.FeatureGroup, record_id: str, names: list[str] | None) -> list[dict[str, str]] | None:
    """The online record of an identifier (None: unknown or deleted)."""
    if not _online_enabled(group):
        raise FeatureStoreValidationError("The FeatureGroup has no OnlineStore.")
    with _lock:
        current = _state(group)["online"].get(record_id)
        if current is None or current["deleted"]:
            return None
        values = dict(current["values"])
    wanted = names or [d["FeatureName"] for d in group.feature_definitions]
    return [{"FeatureName": n, "ValueAsString": values[n]} for n in wanted if values.get(n) is not None]


def _types(group: sm_models.FeatureGroup) -> dict[str, str]:
    return {d["FeatureName"]: d["FeatureType"] for d in group.feature_definitions}


# -- the offline store --------------------------------------------------------------------------


def _resolved(group: sm_models.FeatureGroup) -> tuple[str, str]:
    uri: str = group.offline_store_config["S3StorageConfig"]["ResolvedOutputS3Uri"]
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix.rstrip("/") + "/"


def _account(group: sm_models.FeatureGroup) -> str:
    return str(group.arn.split(":")[4])


def _is_current(group: sm_models.FeatureGroup) -> bool:
    """Whether the group is still one of moto's (not of a backend reset since it was created)."""
    _, _, _, region, account, _ = group.arn.split(":", 5)
    backends = sm_models.sagemaker_backends
    if account not in backends or region not in backends[account]:
        return False
    return backends[account][region].feature_groups.get(group.arn) is group


def _write_offline(group: sm_models.FeatureGroup) -> int:
    """Write the group's buffered records as Feature Store does; returns the files written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    state = _state(group)
    records, state["buffer"] = state["buffer"], []
    _pending.pop(id(group), None)
    if not records or not _is_current(group):
        return 0  # a group of a reset moto (a test's mock_aws that ended) delivers nowhere
    types = _types(group)
    event_name = group.event_time_feature_name
    arrow_types = {"String": pa.string(), "Integral": pa.int64(), "Fractional": pa.float64()}
    stamp = pa.timestamp("ms", tz="UTC")
    schema = pa.schema(
        [(name, arrow_types[kind]) for name, kind in types.items()]
        + [("write_time", stamp), ("api_invocation_time", stamp), ("is_deleted", pa.bool_())]
    )
    partitions: dict[tuple[int, int, int, int], list[dict[str, Any]]] = {}
    for record in records:
        when = datetime.fromtimestamp(_event_seconds(record["values"][event_name], types[event_name]), UTC)
        record["event"] = when
        partitions.setdefault((when.year, when.month, when.day, when.hour), []).append(record)
    bucket, prefix = _resolved(group)
    s3: S3Backend = s3_backends[_account(group)]["aws"]
    written = datetime.now(UTC)
    for (year, month, day, hour), rows in sorted(partitions.items()):
        columns: dict[str, list[Any]] = {name: [] for name in schema.names}
        for row in rows:
            for name, kind in types.items():
                columns[name].append(_typed(row["values"].get(name), kind, name))
            columns["write_time"].append(written)
            columns["api_invocation_time"].append(row["api_invocation_time"])
            columns["is_deleted"].append(row["is_deleted"])
        out = io.BytesIO()
        pq.write_table(pa.table(columns, schema=schema), out)
        latest = max(row["event"] for row in rows).strftime("%Y%m%dT%H%M%SZ")
        suffix = "".join(secrets.choice(_ALPHANUMERIC) for _ in range(16))
        key = f"{prefix}year={year:04d}/month={month:02d}/day={day:02d}/hour={hour:02d}/{latest}_{suffix}.parquet"
        s3.put_object(bucket, key, out.getvalue())
    return len(partitions)


def flush_offline_store() -> int:
    """Write every buffered record to its group's offline store now; returns the files written."""
    with _lock:
        return sum(_write_offline(group) for group in list(_pending.values()))


def _deliver_before_listing(account: str, bucket: str, prefix: str) -> None:
    with _lock:
        for group in list(_pending.values()):
            if _account(group) != account or not _offline_enabled(group):
                continue
            group_bucket, group_prefix = _resolved(group)
            if group_bucket == bucket and (group_prefix.startswith(prefix) or prefix.startswith(group_prefix)):
                _write_offline(group)


_original_list_objects = S3Backend.list_objects


def _list_objects(self: S3Backend, bucket: Any, prefix: str | None, *args: Any, **kwargs: Any) -> Any:
    if _pending:
        _deliver_before_listing(self.account_id, bucket.name, prefix or "")
    return _original_list_objects(self, bucket, prefix, *args, **kwargs)


# -- featurestore-runtime -----------------------------------------------------------------------


class FeatureStoreRuntimeResponse(BaseResponse):
    """featurestore-runtime's REST API (PutRecord, GetRecord, BatchGetRecord, DeleteRecord)."""

    def __init__(self) -> None:
        super().__init__(service_name="sagemaker-featurestore-runtime")

    def _group_name(self) -> str:
        return unquote(self.path.split("?")[0].split("/FeatureGroup/", 1)[1].split("/")[0])

    def _query(self, name: str) -> list[str]:
        values = self.querystring.get(name) or []
        return [str(v) for v in values]

    def _json(self) -> dict[str, Any]:
        body = self.body.decode() if isinstance(self.body, bytes) else (self.body or "")
        parsed: dict[str, Any] = json.loads(body) if body else {}
        return parsed

    def put_record(self) -> Any:
        body = self._json()
        group = _find_group(self.current_account, self.region, self._group_name())
        put_record(group, body.get("Record") or [], body.get("TargetStores"))
        return 200, {"Content-Type": "application/json"}, "{}"

    def get_record(self) -> Any:
        group = _find_group(self.current_account, self.region, self._group_name())
        record_id = (self._query("RecordIdentifierValueAsString") or [""])[0]
        record = get_record(group, record_id, self._query("FeatureName") or None)
        return 200, {"Content-Type": "application/json"}, json.dumps({"Record": record} if record else {})

    def delete_record(self) -> Any:
        group = _find_group(self.current_account, self.region, self._group_name())
        delete_record(
            group,
            (self._query("RecordIdentifierValueAsString") or [""])[0],
            (self._query("EventTime") or [""])[0],
            (self._query("DeletionMode") or ["SoftDelete"])[0],
            self._query("TargetStores") or None,
        )
        return 200, {"Content-Type": "application/json"}, ""

    def batch_write_record(self) -> Any:
        """Each entry as its own PutRecord; an entry that fails is reported in `Errors`, the rest are written."""
        errors: list[dict[str, Any]] = []
        for entry in self._json().get("Entries") or []:
            try:
                group = _find_group(self.current_account, self.region, entry["FeatureGroupName"])
                put_record(group, entry.get("Record") or [], entry.get("TargetStores"))
            except (FeatureStoreResourceNotFoundError, FeatureStoreValidationError) as exc:
                errors.append({"Entry": entry, "ErrorCode": exc.error_type, "ErrorMessage": exc.message})
        body = {"Errors": errors, "UnprocessedEntries": []}
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    def batch_get_record(self) -> Any:
        records: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for identifier in self._json().get("Identifiers") or []:
            name = identifier["FeatureGroupName"]
            for record_id in identifier.get("RecordIdentifiersValueAsString") or []:
                try:
                    group = _find_group(self.current_account, self.region, name)
                    record = get_record(group, record_id, identifier.get("FeatureNames"))
                except (FeatureStoreResourceNotFoundError, FeatureStoreValidationError) as exc:
                    errors.append(
                        {
                            "FeatureGroupName": name,
                            "RecordIdentifierValueAsString": record_id,
                            "ErrorCode": exc.error_type,
                            "ErrorMessage": exc.message,
                        }
                    )
                    continue
                if record:
                    records.append(
                        {"FeatureGroupName": name, "RecordIdentifierValueAsString": record_id, "Record": record}
                    )
        body = {"Records": records, "Errors": errors, "UnprocessedIdentifiers": []}
        return 200, {"Content-Type": "application/json"}, json.dumps(body)


def install() -> None:
    SageMakerResponse.create_feature_group = _create_feature_group  # type: ignore[method-assign]
    SageMakerResponse.describe_feature_group = _describe_feature_group  # type: ignore[method-assign]
    sm_models.FeatureGroup.describe = _describe  # type: ignore[method-assign]
    S3Backend.list_objects = _list_objects  # type: ignore[method-assign]
    handler = FeatureStoreRuntimeResponse.dispatch
    if RUNTIME_HOST not in sm_urls.url_bases:
        sm_urls.url_bases.append(RUNTIME_HOST)
    sm_urls.url_paths["{0}/FeatureGroup/(?P<name>[^/]+)$"] = handler
    sm_urls.url_paths["{0}/BatchGetRecord$"] = handler
    sm_urls.url_paths["{0}/BatchWriteRecord$"] = handler
    if not any(pattern.pattern == RUNTIME_HOST for _, pattern in backend_index.backend_url_patterns):
        backend_index.backend_url_patterns.insert(0, ("sagemaker", re.compile(RUNTIME_HOST)))
