#!/usr/bin/env python3
"""closedloop data preparation: strip PII from one run's raw files and write the prepared data.

One script, run unchanged by a SageMaker Processing job, by the Glue (Python shell) job and
locally:

    python3 prepare.py --manifest s3://<data bucket>/manifests/<dataset>/<run id>/input.json

It needs only the standard library and boto3 (Python 3.9+, as Glue's Python shell has). The
manifest, written by the data-arrival function, names the exact raw object versions, the
dataset's PII policy and where to write. For every file:

* the columns must be exactly the policy's (a missing or extra column rejects the file);
* each column is kept, dropped, pseudonymised (HMAC-SHA256 with a key from Secrets Manager, so
  one customer gets one identifier across runs) or masked;
* every kept text or categorical column is scanned for undeclared PII (e-mail, phone, payment card
  numbers that pass the Luhn check, IBANs that pass mod-97, bank account numbers next to an
  account keyword, US SSNs).

A file that is empty, not UTF-8 or not CSV, off-schema or holds undeclared PII goes to quarantine
with a report and is not passed on. Reports, logs and error messages carry counts, positions,
declared column names and reasons, never a value: an undeclared column name is data until proven
otherwise (a CSV without a header row makes its first data row the header), so it is located by
position, never quoted. Outputs, under the manifest's `output_uri`: `data.csv` (the clean
files' rows), `pii_report.json` (counts per column and entity type, never values) and
`manifest.json` (input object versions, policy and code versions: the lineage of the data).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
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
from typing import Any, Dict, Iterator, List, Optional, Tuple

import boto3

OUTPUT_SCHEMA = "closedloop.prepared-manifest/1"
INPUT_SCHEMA = "closedloop.prep-input/1"
MIN_KEY_LENGTH = 32
SCANNED_TYPES = ("text", "categorical")

log = logging.getLogger("closedloop.prepare")

# --- undeclared PII detection -----------------------------------------------------------------

EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
CARD_CANDIDATE = re.compile(r"(?<![\d\-])(?:\d[ \-]?){12,18}\d(?![\d])")
IBAN_CANDIDATE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
SSN = re.compile(r"(?<!\d)(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?!\d)")
PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .\-]?)?(?:\(\d{2,4}\)|\d{2,4})[ .\-]\d{3,4}[ .\-]\d{3,4}(?!\d)"
    r"|(?<![\w+])\+\d{8,14}(?!\d)"
)
ACCOUNT = re.compile(r"(?i)\b(?:account|acct|a/c|iban|routing|sort code|konto|compte)\b\D{0,20}(\d[\d \-]{6,20}\d)")


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum payment card numbers carry."""
    if not digits.isdigit() or not 13 <= len(digits) <= 19:
        return False
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    """The ISO 13616 mod-97 check of an IBAN."""
    iban = candidate.replace(" ", "").upper()
    if not 15 <= len(iban) <= 34 or not iban[:2].isalpha() or not iban[2:4].isdigit():
        return False
    rearranged = iban[4:] + iban[:4]
    digits = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(digits) % 97 == 1


def detect_pii(text: str) -> List[str]:
    """The kinds of PII found in one value (each kind once), never the values themselves.

    A span claimed by a stronger detector (a Luhn-valid card, a valid IBAN) is blanked before the
    weaker, looser ones (account numbers, phones) look, so one number is reported as one kind.
    """
    found = []
    if "@" in text and EMAIL.search(text):
        found.append("email")
    for match in CARD_CANDIDATE.finditer(text):
        if luhn_valid(re.sub(r"[ \-]", "", match.group(0))):
            found.append("payment_card")
            text = text.replace(match.group(0), " ")
            break
    ibans = [m.group(0) for m in IBAN_CANDIDATE.finditer(text) if iban_valid(m.group(0))]
    if ibans:
        found.append("iban")
    if ACCOUNT.search(text):
        found.append("bank_account")
    for value in ibans:
        text = text.replace(value, " ")
    if SSN.search(text):
        found.append("us_ssn")
    elif PHONE.search(text):
        found.append("phone")
    return found


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


def prepare_stream(
    raw: io.BufferedIOBase, file_format: str, policy: Dict[str, Any], key: bytes, out: io.TextIOBase
) -> Dict[str, Any]:
    """Transform one raw file into prepared CSV rows written to `out` (no header).

    Returns the file's PII report. Raises FileRejected (with the report so far in `details`).
    """
    columns = policy["columns"]
    names = list(columns)
    writer = csv.writer(out, lineterminator="\n")
    declared: Dict[str, Dict[str, Any]] = {
        name: {"action": spec.get("action", "keep"), "pii": spec.get("pii"), "values": 0}
        for name, spec in columns.items()
        if spec.get("action", "keep") != "keep" or spec.get("pii")
    }
    undeclared: Dict[str, Dict[str, int]] = {}
    rows = 0
    text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline="")  # type: ignore[type-var]
    try:
        for line, row in _rows(text, file_format, names):
            output = []
            for name in names:
                spec = columns[name]
                action = spec.get("action", "keep")
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
                column_type = spec.get("type", "text")
                if column_type == "numeric" and value.strip() and not _is_number(value):
                    raise FileRejected("value is not a number", line=line, column=name)
                if spec.get("scan", True) and column_type in SCANNED_TYPES and value:
                    for kind in detect_pii(value):
                        counts = undeclared.setdefault(name, {})
                        counts[kind] = counts.get(kind, 0) + 1
                output.append(value)
            writer.writerow(output)
            rows += 1
    except UnicodeDecodeError as exc:
        raise FileRejected("file is not valid UTF-8", byte_offset_in_chunk=exc.start) from None
    except csv.Error:
        # e.g. a field past the csv module's size limit; its message holds no value, but the line does
        raise FileRejected("file is not valid CSV", rows_read=rows) from None
    finally:
        text.detach()
    report = {"rows": rows, "declared": declared, "undeclared": undeclared}
    if rows == 0:
        raise FileRejected("empty file (no data rows)", report=report)
    if undeclared:
        raise FileRejected(
            "undeclared PII found",
            report=report,
            columns=sorted(undeclared),
            kinds=sorted({kind for counts in undeclared.values() for kind in counts}),
        )
    return report


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
    with open(os.path.abspath(__file__), "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def load_key(secrets: Any, secret_arn: str) -> bytes:
    value: str = secrets.get_secret_value(SecretId=secret_arn)["SecretString"]
    if len(value) < MIN_KEY_LENGTH:
        raise SystemExit("the pseudonymisation key is shorter than 32 characters; refusing to run")
    return value.encode("utf-8")


def run(manifest_uri: str, s3: Any, secrets: Any, engine: str = "local") -> Dict[str, Any]:
    """Prepare one run end to end; returns the output manifest it wrote."""
    bucket, key = split_uri(manifest_uri)
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    if manifest.get("schema") != INPUT_SCHEMA:
        raise SystemExit(f"unsupported manifest schema: {manifest.get('schema')!r}")
    policy = manifest["policy"]
    pii_key = load_key(secrets, manifest["pseudonymisation_secret_arn"])
    out_bucket, out_prefix = split_uri(manifest["output_uri"])
    q_bucket, q_prefix = split_uri(manifest["quarantine_uri"])
    header = [spec.get("rename") or name for name, spec in policy["columns"].items() if spec.get("action") != "drop"]
    inputs: List[Dict[str, Any]] = []
    files_report: List[Dict[str, Any]] = []
    total_rows = 0
    workdir = tempfile.mkdtemp(prefix="closedloop-prep-")
    data_path = os.path.join(workdir, "data.csv")
    try:
        with open(data_path, "w", encoding="utf-8", newline="") as data:
            csv.writer(data, lineterminator="\n").writerow(header)
            for index, obj in enumerate(manifest["objects"]):
                entry = {k: obj.get(k) for k in ("bucket", "key", "version_id", "etag", "size")}
                request = {"Bucket": obj["bucket"], "Key": obj["key"]}
                if obj.get("version_id"):
                    request["VersionId"] = obj["version_id"]
                part_path = os.path.join(workdir, f"part-{index}.csv")
                try:
                    body = s3.get_object(**request)["Body"]
                    with open(part_path, "w", encoding="utf-8", newline="") as part:
                        report = prepare_stream(body, obj.get("format", "csv"), policy, pii_key, part)
                except FileRejected as rejected:
                    quarantine_key = _quarantine(s3, obj, request, q_bucket, q_prefix, index, rejected)
                    entry.update(status="quarantined", reason=rejected.reason, quarantine_key=quarantine_key)
                    files_report.append({**entry, **rejected.details.get("report", {}), "status": "quarantined"})
                    inputs.append(entry)
                    log.warning("quarantined file %d: %s", index, rejected.reason)
                    continue
                with open(part_path, encoding="utf-8", newline="") as part:
                    shutil.copyfileobj(part, data)
                os.remove(part_path)
                total_rows += report["rows"]
                entry.update(status="prepared", rows=report["rows"])
                files_report.append({**entry, **report, "status": "prepared"})
                inputs.append(entry)
        data_uri = None
        if total_rows:
            s3.upload_file(data_path, out_bucket, out_prefix + "data.csv")
            data_uri = f"s3://{out_bucket}/{out_prefix}data.csv"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    pii_report = {
        "run_id": manifest["run_id"],
        "dataset": manifest["dataset"],
        "files": files_report,
        **pii_verdict(files_report),
    }
    output = {
        "schema": OUTPUT_SCHEMA,
        "run_id": manifest["run_id"],
        "dataset": manifest["dataset"],
        "engine": engine,
        "policy": {"dataset": policy["dataset"], "version": policy["version"], "sha256": manifest["policy_sha256"]},
        "code": {"script": "prepare.py", "sha256": script_sha256()},
        "input_manifest": manifest_uri,
        "inputs": inputs,
        "prepared_files": sum(1 for f in files_report if f["status"] == "prepared"),
        "quarantined_files": sum(1 for f in files_report if f["status"] == "quarantined"),
        "output": {
            "data_uri": data_uri,
            "rows": total_rows,
            "columns": header,
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
    _put_json(s3, out_bucket, out_prefix + "manifest.json", output)
    return output


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
    report = {
        "source": {k: obj.get(k) for k in ("bucket", "key", "version_id", "etag", "size")},
        "reason": rejected.reason,
        "details": rejected.details,
        "quarantined_at": datetime.now(timezone.utc).isoformat(),
    }
    _put_json(s3, bucket, target + ".report.json", report)
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
    try:
        output = run(args.manifest, boto3.client("s3"), boto3.client("secretsmanager"), engine=args.engine)
    except Exception as exc:
        if type(exc).__module__.split(".")[0] in AWS_ERROR_MODULES:
            raise  # AWS's own words: they name resources and operations, never a data value
        # Anything else is a bug met on some input, and its message may quote that input: the job's
        # log, its failure reason and the ledger entry made from it get the type and the line only.
        raise SystemExit(withheld(exc)) from None
    log.info(
        "prepared run %s: %d rows from %d files, %d quarantined",
        output["run_id"],
        output["output"]["rows"],
        output["prepared_files"],
        output["quarantined_files"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
