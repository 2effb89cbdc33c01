#!/usr/bin/env python3
"""closedloop data preparation: strip PII from one run's raw files and write the prepared data.

One script, run unchanged by a SageMaker Processing job, by the Glue (Python shell) job and
locally:

    python3 prepare.py --manifest s3://<data bucket>/manifests/<dataset>/<run id>/input.json

It needs the standard library, boto3 (Python 3.9+, as Glue's Python shell has) and its detector
module, `detectors.py` next to it (phone numbers by libphonenumber, national identifiers, IBANs and
cards by python-stdnum: both ship with the job as wheels, see that module). The manifest, written by
the data-arrival function, names the exact raw object versions, the dataset's PII policy and where
to write. For every file:

* the columns must be exactly the policy's (a missing or extra column rejects the file);
* each column is kept, dropped, pseudonymised (HMAC-SHA256 with a key from Secrets Manager, so
  one customer gets one identifier across runs) or masked;
* every kept text, categorical and label column is scanned for undeclared PII (e-mail, phones,
  payment cards, IBANs, bank accounts, national identifiers of the policy's regions, IP
  addresses, passports next to a keyword), every kept numeric column for identifier-shaped numbers;
* numeric values must be numbers inside the declared range and precision, labels and categories
  one of their declared classes.

Undeclared PII is handled as the policy's `undeclared_pii` says: the whole file is quarantined
(`quarantine_file`, the default), only the rows holding it are (`quarantine_rows`: the others are
prepared), or the values are replaced by `[<kind>]` (`redact`; a hit in a numeric or label column,
which cannot be redacted, quarantines its row). Either way the run is not clean (`is_clean`).

A file that is empty, not UTF-8 or not CSV, or off-schema goes to quarantine with a report and is
not passed on. Reports, logs and error messages carry counts, positions,
declared column names and reasons, never a value: an undeclared column name is data until proven
otherwise (a CSV without a header row makes its first data row the header), so it is located by
position, never quoted. Outputs, under the manifest's `output_uri`: `data.csv` (the clean
files' rows), `pii_report.json` (counts per column and entity type and what was done about them,
never values) and `manifest.json` (input object versions, policy, code and detector versions: the
lineage of the data).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import importlib
import io
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import traceback
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import boto3

OUTPUT_SCHEMA = "closedloop.prepared-manifest/1"
INPUT_SCHEMA = "closedloop.prep-input/1"
MIN_KEY_LENGTH = 32

log = logging.getLogger("closedloop.prepare")

# --- undeclared PII detection -----------------------------------------------------------------

SCANNED_TYPES = ("text", "categorical", "label")
UNDECLARED_PII_ACTIONS = ("quarantine_file", "quarantine_rows", "redact")
UNREDACTABLE_TYPES = ("numeric", "label")


_MODULES: Dict[str, Any] = {}
_DETECTORS: Dict[Tuple[Optional[Tuple[str, ...]], bool], Any] = {}


def _detectors() -> Any:
    """The detector module: `detectors.py` beside this script when run as one (the jobs), the
    package's module when imported. Imported on first use: the approval gate imports this file for
    `is_clean` only, and must not load the detector libraries."""
    module = _MODULES.get("detectors")
    if module is None:
        module = _MODULES["detectors"] = importlib.import_module(
            f"{__package__}.detectors" if __package__ else "detectors"
        )
    return module


def _detector(regions: Optional[Sequence[str]], unix_times_in_text: bool = True) -> Any:
    """The detector of a dataset's regions (`None`: the detectors' defaults), built once."""
    key = (tuple(regions) if regions is not None else None, unix_times_in_text)
    found = _DETECTORS.get(key)
    if found is None:
        found = _DETECTORS[key] = _detectors().detector(regions, unix_times_in_text)
    return found


def detect_pii(text: str, regions: Optional[Sequence[str]] = None) -> List[str]:
    """The kinds of PII found in one value (each kind once), never the values themselves.

    `regions` are the ISO codes whose phone numbers and national identifiers are looked for
    (`None`: the detectors' defaults). A span claimed by a stronger detector (a checksum-valid card
    or identifier, a valid IBAN) is set aside before the weaker ones look: one number, one kind.
    """
    kinds: List[str] = _detector(regions).detect(text)
    return kinds


def detect_pii_in_number(text: str, regions: Optional[Sequence[str]] = None) -> List[str]:
    """Identifier-shaped numbers in a numeric column (a card number, a `+49…` phone), never values."""
    kinds: List[str] = _detector(regions).detect_number(text)
    return kinds


# --- column transforms -----------------------------------------------------------------------


def pseudonymise(key: bytes, value: str) -> str:
    """A stable identifier for a value: the same customer gets the same id across runs."""
    normalised = " ".join(value.split()).casefold()
    if not normalised:
        return ""
    return "id-" + hmac.new(key, normalised.encode("utf-8"), hashlib.sha256).hexdigest()[:20]


def mask(value: str) -> str:
    """Keep at most the last four characters (as receipts show a card)."""
    compact = re.sub(r"[ \-]", "", value)
    if len(compact) <= 4:
        return "*" * len(compact)
    return "*" * (len(compact) - 4) + compact[-4:]


class FileRejected(Exception):
    """A raw file that must not be passed on; `reason` is safe to log (it holds no data value)."""

    def __init__(self, reason: str, **details: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return value.strip().lower() not in ("nan", "inf", "-inf", "infinity", "-infinity")


def _rows(stream: io.TextIOBase, file_format: str, columns: List[str]) -> Iterator[Tuple[int, Dict[str, str]]]:
    """(line number, row) for each data row; raises FileRejected on a schema break."""
    if file_format == "csv":
        reader = csv.reader(stream)
        header = next(reader, None)
        if header is None:
            raise FileRejected("empty file")
        header = [name.strip() for name in header]
        _check_columns(header, columns, HEADER_LOOKS_LIKE_DATA)
        for line, values in enumerate(reader, start=2):
            if not values:
                continue
            if len(values) != len(header):
                raise FileRejected(
                    "row has the wrong number of fields", line=line, fields=len(values), expected=len(header)
                )
            yield line, dict(zip(header, values))
        return
    for line, text in enumerate(stream, start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except ValueError:
            raise FileRejected("line is not valid JSON", line=line) from None
        if not isinstance(record, dict):
            raise FileRejected("line is not a JSON object", line=line)
        if "\\u" in text and not _encodable(record):
            raise FileRejected("a value is not valid Unicode (an unpaired surrogate escape)", line=line)
        _check_columns(list(record), columns, KEYS_LOOK_LIKE_DATA, line=line)
        row = {}
        for name, value in record.items():
            if isinstance(value, (dict, list)):
                raise FileRejected("nested value in a column", line=line, column=name)
            row[name] = "" if value is None else (str(value).lower() if isinstance(value, bool) else str(value))
        yield line, row


def _encodable(record: Dict[str, Any]) -> bool:
    """JSON may escape half a surrogate pair (`"\\ud800"`): such a string cannot be written as UTF-8."""
    try:
        for name, value in record.items():
            name.encode("utf-8")
            if isinstance(value, str):
                value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# A header is data until proven otherwise: only the policy's declared column names may be named in
# a report, a log or an error. An undeclared header cell is reported by its position (1-based, as
# a spreadsheet counts) and never by its text: a CSV without a header row makes its first data row
# the header, and a JSON Lines record may use a value as a key.
HEADER_LOOKS_LIKE_DATA = "the header row looks like data (is the header row missing?)"
KEYS_LOOK_LIKE_DATA = "a record's keys look like data (values used as keys?)"
MAX_POSITIONS = 50


def _looks_like_data(name: str) -> bool:
    """A column name shaped like a value: a number, or anything the PII detectors flag."""
    text = name.strip()
    return bool(text) and (_is_number(text) or bool(detect_pii(text)))


def _check_columns(found: List[str], columns: List[str], looks_like_data: str, **where: Any) -> None:
    """Raises FileRejected unless `found` holds each declared column exactly once and nothing else.

    The details name declared columns only; undeclared ones are counted and located by position.
    The reason is `looks_like_data` when an undeclared name is shaped like a value or no name at all
    is a declared one.
    """
    expected = set(columns)
    seen: "set[str]" = set()
    unexpected: List[int] = []
    duplicates: List[int] = []
    for position, name in enumerate(found, start=1):
        if name not in expected:
            unexpected.append(position)
        elif name in seen:
            duplicates.append(position)
        seen.add(name)
    missing = [name for name in columns if name not in seen]
    if not (unexpected or duplicates or missing):
        return
    data_shaped = [position for position in unexpected if _looks_like_data(found[position - 1])]
    details: Dict[str, Any] = dict(
        where,
        columns_found=len(found),
        columns_expected=len(columns),
        missing=missing,
        unexpected_columns=len(unexpected),
        unexpected_positions=unexpected[:MAX_POSITIONS],
    )
    if data_shaped:
        details.update(data_shaped_columns=len(data_shaped), data_shaped_positions=data_shaped[:MAX_POSITIONS])
    if duplicates:
        # a repeated declared name may be named; a repeated undeclared one is among `unexpected`
        details.update(duplicated=sorted({found[position - 1] for position in duplicates}))
    if data_shaped or (found and len(unexpected) == len(found)):
        raise FileRejected(looks_like_data, **details)
    if duplicates:
        raise FileRejected("duplicate column names", **details)
    raise FileRejected("columns do not match the dataset policy", **details)


def _value_problem(value: str, spec: Dict[str, Any]) -> Optional[str]:
    """Why a kept value breaks its column's declared type, range, precision or classes (or None)."""
    if spec.get("type", "text") != "numeric":
        classes = spec.get("classes")
        return "value is not one of the declared classes" if classes is not None and value not in classes else None
    if not value.strip():
        return None
    if not _is_number(value):
        return "value is not a number"
    number = float(value)
    mantissa = value.strip().lower().split("e")[0]
    decimals = len(mantissa.split(".")[1].rstrip("0")) if "." in mantissa else 0
    checks = (
        (spec.get("minimum") is not None and number < spec["minimum"], "value is below the declared minimum"),
        (spec.get("maximum") is not None and number > spec["maximum"], "value is above the declared maximum"),
        (spec.get("decimals") is not None and decimals > spec["decimals"], "value has more decimals than declared"),
    )
    return next((problem for broken, problem in checks if broken), None)


def prepare_stream(
    raw: io.BufferedIOBase,
    file_format: str,
    policy: Dict[str, Any],
    key: bytes,
    out: io.TextIOBase,
    withheld_rows: Optional[io.TextIOBase] = None,
) -> Dict[str, Any]:
    """Transform one raw file into prepared CSV rows written to `out` (no header).

    Undeclared PII is handled as `policy["undeclared_pii"]` says; with `quarantine_rows` (and, for a
    hit that cannot be redacted, `redact`) the rows holding it are written, raw and with a header,
    to `withheld_rows` instead of `out`. Returns the file's PII report (counts, never values).
    Raises FileRejected (with the report so far in `details`).
    """
    columns = policy["columns"]
    names = list(columns)
    regions = policy.get("regions")
    detector = _detector(regions, policy.get("unix_times_in_text", True))
    action_on_pii = policy.get("undeclared_pii") or "quarantine_file"
    if action_on_pii not in UNDECLARED_PII_ACTIONS:
        raise ValueError("the dataset policy's undeclared_pii is not one of " + ", ".join(UNDECLARED_PII_ACTIONS))
    writer = csv.writer(out, lineterminator="\n")
    withheld_writer = csv.writer(withheld_rows, lineterminator="\n") if withheld_rows is not None else None
    declared: Dict[str, Dict[str, Any]] = {
        name: {"action": spec.get("action", "keep"), "pii": spec.get("pii"), "values": 0}
        for name, spec in columns.items()
        if spec.get("action", "keep") != "keep" or spec.get("pii")
    }
    # (name, action, type, scanner, spec) once per file, not per value
    plan = []
    for name in names:
        spec = columns[name]
        column_type = spec.get("type", "text")
        scanner = None
        if spec.get("scan", True):
            scanner = (
                detector.detect
                if column_type in SCANNED_TYPES
                else (detector.detect_number if column_type == "numeric" else None)
            )
        plan.append((name, spec.get("action", "keep"), column_type, scanner, spec))
    validated = [
        (name, spec)
        for name, action, column_type, _, spec in plan
        if action == "keep" and (column_type == "numeric" or spec.get("classes") is not None)
    ]
    undeclared: Dict[str, Dict[str, int]] = {}
    handled: Dict[str, Any] = {"action": action_on_pii, "rows_with_pii": 0, "quarantined_rows": 0, "redacted_values": 0}
    rows = 0

    def report() -> Dict[str, Any]:
        return {"rows": rows, "declared": declared, "undeclared": undeclared, "undeclared_pii": handled}

    text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline="")  # type: ignore[type-var]
    try:
        for line, row in _rows(text, file_format, names):
            output = []
            hits: List[Tuple[int, str, str]] = []  # (output position, column, column type)
            for name, action, column_type, scanner, _spec in plan:
                value = row[name]
                if action == "drop":
                    if value:
                        declared[name]["values"] += 1
                    continue
                if action == "pseudonymise":
                    if value:
                        declared[name]["values"] += 1
                    output.append(pseudonymise(key, value))
                    continue
                if action == "mask":
                    if value:
                        declared[name]["values"] += 1
                    output.append(mask(value))
                    continue
                if scanner is not None and value:
                    kinds = scanner(value)
                    if kinds:
                        counts = undeclared.setdefault(name, {})
                        for kind in kinds:
                            counts[kind] = counts.get(kind, 0) + 1
                        hits.append((len(output), name, column_type))
                output.append(value)
            if hits and action_on_pii != "quarantine_file":
                handled["rows_with_pii"] += 1
                if action_on_pii == "quarantine_rows" or any(t in UNREDACTABLE_TYPES for _, _, t in hits):
                    # the row is withheld whole: what sits next to a found value may identify too
                    if withheld_writer is not None:
                        if handled["quarantined_rows"] == 0:
                            withheld_writer.writerow(names)
                        withheld_writer.writerow([row[name] for name in names])
                    handled["quarantined_rows"] += 1
                    continue
                for position, _, _ in hits:
                    output[position] = detector.redact(output[position])[0]
                    handled["redacted_values"] += 1
            for name, spec in validated:
                problem = _value_problem(row[name], spec)
                if problem:
                    raise FileRejected(problem, line=line, column=name, report=report())
            writer.writerow(output)
            rows += 1
    except UnicodeDecodeError as exc:
        raise FileRejected("file is not valid UTF-8", byte_offset_in_chunk=exc.start) from None
    except csv.Error:
        # e.g. a field past the csv module's size limit; its message holds no value, but the line does
        raise FileRejected("file is not valid CSV", rows_read=rows) from None
    finally:
        text.detach()
    if rows == 0:
        if handled["quarantined_rows"]:
            raise FileRejected("every row held undeclared PII", report=report())
        raise FileRejected("empty file (no data rows)", report=report())
    if undeclared and action_on_pii == "quarantine_file":
        raise FileRejected(
            "undeclared PII found",
            report=report(),
            columns=sorted(undeclared),
            kinds=sorted({kind for counts in undeclared.values() for kind in counts}),
        )
    return report()


# --- the run's PII verdict ----------------------------------------------------------------------


def is_clean(undeclared_pii_files: int) -> bool:
    """The one definition of a clean preparation run: none of its raw files held undeclared PII.

    Prepared or quarantined alike: a quarantined file kept its values out of the prepared data, but
    it shows that the source sends personal data the dataset policy does not declare, and a person
    must look at that before a model trained on the source is released. `pii_report.json`'s `clean`,
    the approval gate's `pii_clean` (`closedloop.approval`) and what `closedloop approve` prints all
    come from here.
    """
    return undeclared_pii_files == 0


def pii_verdict(files: List[Dict[str, Any]]) -> Dict[str, Any]:
    """`undeclared_pii_files` and `clean` of a run's PII report, from its per-file reports."""
    undeclared = sum(1 for entry in files if entry.get("undeclared"))
    return {"undeclared_pii_files": undeclared, "clean": is_clean(undeclared)}


# --- S3 plumbing ------------------------------------------------------------------------------


def split_uri(uri: str) -> Tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError("not an s3:// URI")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def script_sha256() -> str:
    return _file_sha256(__file__)


def _file_sha256(path: str) -> str:
    with open(os.path.abspath(path), "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def load_key(secrets: Any, secret_arn: str) -> bytes:
    value: str = secrets.get_secret_value(SecretId=secret_arn)["SecretString"]
    if len(value) < MIN_KEY_LENGTH:
        raise SystemExit("the pseudonymisation key is shorter than 32 characters; refusing to run")
    return value.encode("utf-8")


def open_run(manifest_uri: str, s3: Any, secrets: Any) -> Dict[str, Any]:
    """The run as every engine starts it: its input manifest read and checked, its key, where to write."""
    bucket, key = split_uri(manifest_uri)
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    if manifest.get("schema") != INPUT_SCHEMA:
        raise SystemExit(f"unsupported manifest schema: {manifest.get('schema')!r}")
    policy = manifest["policy"]
    out_bucket, out_prefix = split_uri(manifest["output_uri"])
    q_bucket, q_prefix = split_uri(manifest["quarantine_uri"])
    return {
        "manifest_uri": manifest_uri,
        "manifest": manifest,
        "policy": policy,
        "pii_key": load_key(secrets, manifest["pseudonymisation_secret_arn"]),
        "out_bucket": out_bucket,
        "out_prefix": out_prefix,
        "q_bucket": q_bucket,
        "q_prefix": q_prefix,
        "handling": _pii_handling(policy),
        "header": [
            spec.get("rename") or name for name, spec in policy["columns"].items() if spec.get("action") != "drop"
        ],
    }


def prepare_object(
    run: Dict[str, Any], index: int, obj: Dict[str, Any], s3: Any, part_path: str, withheld_path: str
) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Prepare the run's `index`-th raw object: its rows (no header) go to `part_path`.

    Returns its input entry (for the manifest) and its file report (for the PII report). A rejected
    file is quarantined and its part left empty; withheld rows are quarantined beside it. Every side
    effect is keyed by the object's index in the run, so preparing it again replaces, never adds.
    """
    entry = {k: obj.get(k) for k in ("bucket", "key", "version_id", "etag", "size")}
    request = {"Bucket": obj["bucket"], "Key": obj["key"]}
    if obj.get("version_id"):
        request["VersionId"] = obj["version_id"]
    try:
        body = s3.get_object(**request)["Body"]
        with (
            open(part_path, "w", encoding="utf-8", newline="") as part,
            open(withheld_path, "w", encoding="utf-8", newline="") as withheld,
        ):
            report = prepare_stream(body, obj.get("format", "csv"), run["policy"], run["pii_key"], part, withheld)
    except FileRejected as rejected:
        quarantine_key = _quarantine(s3, obj, request, run["q_bucket"], run["q_prefix"], index, rejected)
        entry.update(status="quarantined", reason=rejected.reason, quarantine_key=quarantine_key)
        open(part_path, "w").close()  # nothing of a rejected file is passed on
        log.warning("quarantined file %d: %s", index, rejected.reason)
        return entry, {**entry, **rejected.details.get("report", {}), "status": "quarantined"}
    entry.update(status="prepared", rows=report["rows"])
    if report["undeclared_pii"]["quarantined_rows"]:
        entry["rows_quarantine_key"] = _quarantine_rows(
            s3, obj, withheld_path, run["q_bucket"], run["q_prefix"], index, report
        )
        log.warning(
            "quarantined %d rows of file %d: undeclared PII found", report["undeclared_pii"]["quarantined_rows"], index
        )
    return entry, {**entry, **report, "status": "prepared"}


def finish_run(
    run: Dict[str, Any],
    s3: Any,
    inputs: List[Dict[str, Any]],
    files_report: List[Dict[str, Any]],
    data: Dict[str, Any],
    engine: str,
    featurestore: Any = None,
) -> Dict[str, Any]:
    """Write the run's PII report, ingest its rows into the line's feature group when the manifest
    names one, then write its output manifest — last: a run is done when its manifest is there.

    `inputs` and `files_report` are in the run's object order; `data` is where the prepared rows
    are (`data_uri`, and what else the engine writes: format, parts). `featurestore`: a
    featurestore-runtime client (default: built from the environment when needed).
    """
    manifest, policy, handling = run["manifest"], run["policy"], run["handling"]
    out_bucket, out_prefix = run["out_bucket"], run["out_prefix"]
    pii_report = {
        "run_id": manifest["run_id"],
        "dataset": manifest["dataset"],
        "files": files_report,
        **pii_verdict(files_report),
        **handling,
    }
    output = {
        "schema": OUTPUT_SCHEMA,
        "run_id": manifest["run_id"],
        "dataset": manifest["dataset"],
        "engine": engine,
        "policy": {"dataset": policy["dataset"], "version": policy["version"], "sha256": manifest["policy_sha256"]},
        "code": {"script": "prepare.py", "sha256": script_sha256(), "detectors": handling["detectors"]},
        "pii": {
            **{k: handling[k] for k in ("undeclared_pii", "regions", "unix_times_in_text")},
            "undeclared_pii_files": pii_report["undeclared_pii_files"],
            "clean": pii_report["clean"],
            "quarantined_rows": sum(f.get("undeclared_pii", {}).get("quarantined_rows", 0) for f in files_report),
            "redacted_values": sum(f.get("undeclared_pii", {}).get("redacted_values", 0) for f in files_report),
        },
        "input_manifest": run["manifest_uri"],
        "inputs": inputs,
        "prepared_files": sum(1 for f in files_report if f["status"] == "prepared"),
        "quarantined_files": sum(1 for f in files_report if f["status"] == "quarantined"),
        "output": {
            **data,
            "rows": sum(entry.get("rows", 0) for entry in inputs if entry["status"] == "prepared"),
            "columns": run["header"],
            "column_types": {
                (spec.get("rename") or name): spec.get("type", "text")
                for name, spec in policy["columns"].items()
                if spec.get("action") != "drop"
            },
            "label": policy.get("label"),
            "protected_attribute": policy.get("protected_attribute"),
            "favourable_label": policy.get("favourable_label", "1"),
        },
        "pii_report_uri": f"s3://{out_bucket}/{out_prefix}pii_report.json",
        "created_at": datetime.now(timezone.utc).isoformat(),
    }
    _put_json(s3, out_bucket, out_prefix + "pii_report.json", pii_report)
    plan = manifest.get("feature_store")
    if plan:
        output["feature_store"] = ingest_features(plan, s3, data, featurestore)
    _put_json(s3, out_bucket, out_prefix + "manifest.json", output)
    return output


# --- Feature Store ingestion ------------------------------------------------------------------

INGEST_THREADS = 8
INGEST_CHUNK = 2000
INGEST_BATCH = 25  # BatchWriteRecord's most entries a request
ISO_EVENT_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?Z$")


def event_time_now(now: Optional[datetime] = None) -> str:
    """An event time as Feature Store takes it: ISO-8601 UTC with milliseconds (`…T10:00:00.123Z`)."""
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _prepared_parts(data: Dict[str, Any]) -> List[str]:
    """The prepared data's CSV objects (each with its header), as the engine wrote them."""
    if data.get("parts"):
        return list(data["parts"])
    return [data["data_uri"]] if data.get("data_uri") else []


def feature_records(
    rows: Iterator[Dict[str, str]], plan: Dict[str, Any], run_event_time: str
) -> Iterator[Optional[List[Dict[str, str]]]]:
    """Each prepared row as a Feature Store record (None: its event time is not ISO-8601 UTC).

    The label is not a feature; an empty value is left out (a missing feature, null offline).
    """
    declared = plan.get("event_time")
    names = [name for name in plan["features"] if declared or name != plan["event_time_feature"]]
    for row in rows:
        event_time = row.get(declared, "") if declared else run_event_time
        if not ISO_EVENT_TIME.match(event_time) or not row.get(plan["record_identifier"]):
            yield None
            continue
        record = [{"FeatureName": name, "ValueAsString": row[name]} for name in names if row.get(name, "") != ""]
        if not declared:
            record.append({"FeatureName": plan["event_time_feature"], "ValueAsString": event_time})
        yield record


def ingest_features(plan: Dict[str, Any], s3: Any, data: Dict[str, Any], featurestore: Any = None) -> Dict[str, Any]:
    """Write every prepared row into the line's feature group: threads, 25 records a request.

    BatchWriteRecord where the job's boto3 knows it (an entry it leaves unprocessed or fails is put
    again with PutRecord), PutRecord one record at a time where it does not (an older boto3 in
    Glue's Python shell). Returns the lineage of the ingestion (counts and names, never values). A
    row without a record identifier or with an event time that is not ISO-8601 UTC is not
    ingested and is counted; a PutRecord that fails after the client's retries fails the run
    (AWS's error, which names the operation and the group).
    """
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415 - only runs that ingest need it

    if featurestore is None:
        # the client's own retries (throttling included); its 10 pooled connections serve the 8 threads
        featurestore = boto3.client("sagemaker-featurestore-runtime", region_name=s3.meta.region_name)
    group = plan["feature_group"]
    batched = "BatchWriteRecord" in featurestore.meta.service_model.operation_names
    run_event_time = event_time_now()
    started = datetime.now(timezone.utc)
    ingested = skipped = 0

    def write(records: List[List[Dict[str, str]]]) -> None:
        if not batched:
            for record in records:
                featurestore.put_record(FeatureGroupName=group, Record=record)
            return
        response = featurestore.batch_write_record(
            Entries=[{"FeatureGroupName": group, "Record": record} for record in records]
        )
        again = list(response.get("UnprocessedEntries") or []) + [e["Entry"] for e in response.get("Errors") or []]
        for entry in again:
            featurestore.put_record(FeatureGroupName=group, Record=entry["Record"])

    def send(chunk: List[List[Dict[str, str]]], pool: Any) -> None:
        list(pool.map(write, [chunk[i : i + INGEST_BATCH] for i in range(0, len(chunk), INGEST_BATCH)]))

    with ThreadPoolExecutor(max_workers=INGEST_THREADS) as pool:
        for uri in _prepared_parts(data):
            bucket, key = split_uri(uri)
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
            text = io.TextIOWrapper(body, encoding="utf-8", newline="")
            chunk: List[List[Dict[str, str]]] = []
            for record in feature_records(csv.DictReader(text), plan, run_event_time):
                if record is None:
                    skipped += 1
                    continue
                chunk.append(record)
                if len(chunk) >= INGEST_CHUNK:
                    send(chunk, pool)
                    ingested += len(chunk)
                    chunk = []
            send(chunk, pool)
            ingested += len(chunk)
    seconds = (datetime.now(timezone.utc) - started).total_seconds()
    log.info(
        "ingested %d records into feature group %s in %.1f s (%d rows not ingested)", ingested, group, seconds, skipped
    )
    return {
        "feature_group": group,
        "record_identifier": plan["record_identifier"],
        "event_time": plan.get("event_time"),
        "event_time_feature": plan["event_time_feature"],
        "event_time_value": None if plan.get("event_time") else run_event_time,
        "features": plan["features"],
        "api": "BatchWriteRecord" if batched else "PutRecord",
        "ingested_records": ingested,
        "rows_not_ingested": skipped,
        "ingest_seconds": round(seconds, 3),
        "ingested_at": started.isoformat(),
    }


def run(manifest_uri: str, s3: Any, secrets: Any, engine: str = "local") -> Dict[str, Any]:
    """Prepare one run end to end on this machine, file after file; returns the output manifest it wrote."""
    prepared = open_run(manifest_uri, s3, secrets)
    out_bucket, out_prefix = prepared["out_bucket"], prepared["out_prefix"]
    inputs: List[Dict[str, Any]] = []
    files_report: List[Dict[str, Any]] = []
    workdir = tempfile.mkdtemp(prefix="closedloop-prep-")
    data_path = os.path.join(workdir, "data.csv")
    try:
        with open(data_path, "w", encoding="utf-8", newline="") as data:
            csv.writer(data, lineterminator="\n").writerow(prepared["header"])
            for index, obj in enumerate(prepared["manifest"]["objects"]):
                part_path = os.path.join(workdir, f"part-{index}.csv")
                entry, report = prepare_object(
                    prepared, index, obj, s3, part_path, os.path.join(workdir, f"part-{index}.withheld.csv")
                )
                with open(part_path, encoding="utf-8", newline="") as part:
                    shutil.copyfileobj(part, data)
                os.remove(part_path)
                inputs.append(entry)
                files_report.append(report)
        data_uri = None
        if any(entry.get("rows") for entry in inputs):
            s3.upload_file(data_path, out_bucket, out_prefix + "data.csv")
            data_uri = f"s3://{out_bucket}/{out_prefix}data.csv"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return finish_run(prepared, s3, inputs, files_report, {"data_uri": data_uri}, engine)


def _pii_handling(policy: Dict[str, Any]) -> Dict[str, Any]:
    """What the run does about undeclared PII, where it looks, and with which detector versions."""
    detectors = _detectors()
    regions = policy.get("regions")
    unix_times_in_text = policy.get("unix_times_in_text", True)
    try:
        detector = detectors.detector(regions, unix_times_in_text)
    except ValueError:  # the policy is ours to quote: region codes, not data
        raise SystemExit("the dataset policy names a region libphonenumber does not know") from None
    return {
        "undeclared_pii": policy.get("undeclared_pii") or "quarantine_file",
        "regions": list(detector.regions),
        "regions_declared": regions is not None,
        "unix_times_in_text": unix_times_in_text,
        "detectors": {"sha256": _file_sha256(detectors.__file__), **detectors.library_versions()},
    }


def quarantine_report(
    obj: Dict[str, Any], reason: str, details: Dict[str, Any], at: Optional[datetime] = None
) -> Dict[str, Any]:
    """The `.report.json` beside a quarantined file: which object version, why, counts and positions only.

    One shape for every quarantine: rejected files, withheld rows, and empty uploads (route 1).
    """
    return {
        "source": {k: obj.get(k) for k in ("bucket", "key", "version_id", "etag", "size")},
        "reason": reason,
        "details": details,
        "quarantined_at": (at or datetime.now(timezone.utc)).isoformat(),
    }


def _quarantine_rows(
    s3: Any, obj: Dict[str, Any], path: str, bucket: str, prefix: str, index: int, report: Dict[str, Any]
) -> str:
    """Put a prepared file's withheld rows (raw, with a header) in quarantine with a counts-only report."""
    name = obj["key"].rsplit("/", 1)[-1]
    target = f"{prefix}{index:05d}-{name}.rows.csv"
    s3.upload_file(path, bucket, target)
    _put_json(
        s3,
        bucket,
        target + ".report.json",
        quarantine_report(
            obj,
            "undeclared PII found",
            {
                "rows": report["undeclared_pii"]["quarantined_rows"],
                "undeclared": report["undeclared"],
                "undeclared_pii": report["undeclared_pii"]["action"],
            },
        ),
    )
    return target


def _quarantine(
    s3: Any,
    obj: Dict[str, Any],
    request: Dict[str, str],
    bucket: str,
    prefix: str,
    index: int,
    rejected: FileRejected,
) -> str:
    name = obj["key"].rsplit("/", 1)[-1]
    target = f"{prefix}{index:05d}-{name}"
    source = {"Bucket": request["Bucket"], "Key": request["Key"]}
    if "VersionId" in request:
        source["VersionId"] = request["VersionId"]
    s3.copy(source, bucket, target)
    _put_json(s3, bucket, target + ".report.json", quarantine_report(obj, rejected.reason, rejected.details))
    return target


def _put_json(s3: Any, bucket: str, key: str, document: Dict[str, Any]) -> None:
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=json.dumps(document, indent=1, sort_keys=True).encode("utf-8"),
        ContentType="application/json",
    )


AWS_ERROR_MODULES = ("botocore", "boto3", "s3transfer")


def withheld(exc: BaseException) -> str:
    """What may be said of an unexpected error: its type and where in this script, not its message."""
    here = os.path.abspath(__file__)
    lines = [
        frame.lineno for frame in traceback.extract_tb(exc.__traceback__) if os.path.abspath(frame.filename) == here
    ]
    where = f" at prepare.py line {lines[-1]}" if lines else ""
    return f"preparation failed: {type(exc).__name__}{where} (message withheld: it may quote the data)"


def main(argv: Optional[List[str]] = None) -> int:
    import argparse  # noqa: PLC0415 - not at the top: the approval gate imports this module for `is_clean`

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--manifest", required=True, help="s3:// URI of the run's input manifest")
    parser.add_argument("--run-id", default="", help="recorded only; the manifest is authoritative")
    parser.add_argument("--engine", default="local", choices=("processing", "glue", "local"))
    # Glue passes its own arguments (--JOB_ID, --scriptLocation…): ignore what is not ours.
    args, _ = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return run_job(lambda: run(args.manifest, boto3.client("s3"), boto3.client("secretsmanager"), engine=args.engine))


def run_job(prepare_run: Callable[[], Dict[str, Any]]) -> int:
    """A job's run, as every engine's entry point makes it: its outcome logged in counts, and an error
    that may quote the data withheld."""
    try:
        output = prepare_run()
    except Exception as exc:
        if type(exc).__module__.split(".")[0] in AWS_ERROR_MODULES:
            raise  # AWS's own words: they name resources and operations, never a data value
        # Anything else is a bug met on some input, and its message may quote that input: the job's
        # log, its failure reason and the ledger entry made from it get the type and the line only.
        raise SystemExit(withheld(exc)) from None
    log.info(
        "prepared run %s (%s): %d rows from %d files, %d quarantined",
        output["run_id"],
        output["engine"],
        output["output"]["rows"],
        output["prepared_files"],
        output["quarantined_files"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
