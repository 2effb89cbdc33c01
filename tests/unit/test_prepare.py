"""The preparation script's PII handling, on the seeded synthetic dataset (no AWS)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from closedloop.dataprep.policy import load_policy
from closedloop.prep import prepare
from closedloop_ops import synthetic
from support.leaks import document_texts, leaks

KEY = b"k" * 48


def policy() -> dict[str, object]:
    return load_policy("loans").model_dump(mode="json")


def run_stream(text: str | bytes, file_format: str = "csv") -> tuple[dict[str, object], str]:
    raw = io.BytesIO(text.encode("utf-8") if isinstance(text, str) else text)
    out = io.StringIO()
    report = prepare.prepare_stream(raw, file_format, policy(), KEY, out)
    return report, out.getvalue()


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("write to jane.doe@example.org please", ["email"]),
        ("card 4111 1111 1111 1111 on file", ["payment_card"]),
        ("ref 4111111111111112 is not a card", []),
        ("order 1234567890123 shipped", []),
        ("IBAN DE89370400440532013000", ["iban"]),
        ("account no. 12345678", ["bank_account"]),
        ("ssn 536-90-4399", ["us_ssn"]),
        ("call +44 20 7946 0958", ["phone"]),
        ("call (555) 123-4567", ["phone"]),
        ("returning customer", []),
        ("2026-11-27", []),
    ],
)
def test_undeclared_pii_detection(text: str, kinds: list[str]) -> None:
    assert prepare.detect_pii(text) == kinds


def test_luhn_invalid_digit_runs_are_not_flagged_as_cards() -> None:
    # Given many random 16-digit runs that fail the Luhn check
    import random

    from stdnum import luhn

    rng = random.Random(3)
    runs = []
    while len(runs) < 200:
        digits = "".join(str(rng.randrange(10)) for _ in range(16))
        if not luhn.is_valid(digits):
            runs.append(digits)
    # Then none is reported as a payment card
    assert not any("payment_card" in prepare.detect_pii(f"ref {digits}") for digits in runs)


def test_pseudonyms_are_stable_keyed_and_normalised() -> None:
    assert prepare.pseudonymise(KEY, "Ada Lovelace") == prepare.pseudonymise(KEY, "  ada   LOVELACE ")
    assert prepare.pseudonymise(KEY, "Ada Lovelace") != prepare.pseudonymise(b"x" * 48, "Ada Lovelace")
    assert prepare.pseudonymise(KEY, "Ada Lovelace") != prepare.pseudonymise(KEY, "Ada Byron")
    assert prepare.pseudonymise(KEY, "") == ""


def test_mask_keeps_at_most_four_characters() -> None:
    assert prepare.mask("4111 1111 1111 1234") == "************1234"
    assert prepare.mask("12") == "**"


def test_every_seeded_pii_value_is_absent_from_the_prepared_output() -> None:
    # Given 500 seeded applications with names, addresses, e-mails, phones, IBANs and card numbers
    records = list(synthetic.rows(500, seed=11))
    # When the file is prepared
    report, output = run_stream(synthetic.to_csv(records))
    # Then no seeded PII value (nor a card number's first twelve digits) is in the output
    for value in synthetic.pii_values(records):
        assert value not in output
    for record in records:
        assert record["card_number"][:12] not in output
    # And the declared PII is counted per column, never shown
    assert report["rows"] == 500
    declared = report["declared"]
    assert isinstance(declared, dict)
    assert declared["email"]["values"] == 500
    assert declared["full_name"]["action"] == "pseudonymise"
    assert report["undeclared"] == {}


def test_the_same_customer_gets_the_same_id_across_files() -> None:
    records = list(synthetic.rows(50, seed=5))
    _, first = run_stream(synthetic.to_csv(records[:30]))
    _, second = run_stream(synthetic.to_jsonl(records[20:]), "jsonl")
    ids_first = {row[1] for row in csv.reader(io.StringIO(first))}
    ids_second = {row[1] for row in csv.reader(io.StringIO(second))}
    assert ids_first & ids_second  # the ten shared customers


def test_undeclared_pii_in_a_kept_column_rejects_the_file() -> None:
    # Given one note that holds an e-mail address
    records = list(synthetic.rows(20, seed=2))
    records[7]["notes"] = "customer asked to use mail.box@example.net instead"
    # Then the file is rejected with counts per column and kind, and no value
    with pytest.raises(prepare.FileRejected) as rejected:
        run_stream(synthetic.to_csv(records))
    assert rejected.value.reason == "undeclared PII found"
    assert rejected.value.details["kinds"] == ["email"]
    assert rejected.value.details["report"]["undeclared"] == {"notes": {"email": 1}}
    assert "mail.box" not in repr(rejected.value.details)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (synthetic.to_csv([]).encode(), "empty file (no data rows)"),
        ("\ufeff" + synthetic.to_csv([]), "empty file (no data rows)"),
        (b"application_id,full_name\nAPP-1,x\n", "columns do not match the dataset policy"),
        (b"\xff\xfe\x00garbage", "file is not valid UTF-8"),
    ],
    ids=["zero-bytes", "header-only", "bom-header-only", "missing-columns", "not-utf8"],
)
def test_broken_files_are_rejected_with_a_reason(content: bytes | str, reason: str) -> None:
    with pytest.raises(prepare.FileRejected) as rejected:
        run_stream(content)
    assert rejected.value.reason == reason


def test_an_extra_column_is_located_not_named() -> None:
    # Given a file with one column more than the policy declares
    text = synthetic.to_csv(list(synthetic.rows(3)))
    lines = text.splitlines()
    lines = [lines[0] + ",ssn"] + [line + ",x" for line in lines[1:]]
    # When it is prepared
    with pytest.raises(prepare.FileRejected) as rejected:
        run_stream("\n".join(lines) + "\n")
    # Then it is rejected with its position and counts; the undeclared name is not repeated
    assert rejected.value.reason == "columns do not match the dataset policy"
    assert rejected.value.details == {
        "columns_found": 21,
        "columns_expected": 20,
        "missing": [],
        "unexpected_columns": 1,
        "unexpected_positions": [21],
    }
    assert "ssn" not in str(rejected.value) + repr(rejected.value.details)


def test_a_missing_declared_column_is_named() -> None:
    # Given a file without the declared `notes` column
    records = [{k: v for k, v in r.items() if k != "notes"} for r in synthetic.rows(3)]
    lines = [",".join(records[0])] + [",".join(r.values()) for r in records]
    # Then the declared name is named: it is the policy's, not the data's
    with pytest.raises(prepare.FileRejected) as rejected:
        run_stream("\n".join(lines) + "\n")
    assert rejected.value.reason == "columns do not match the dataset policy"
    assert (rejected.value.details["missing"], rejected.value.details["unexpected_columns"]) == (["notes"], 0)


def pii_of(record: dict[str, str]) -> list[str]:
    return [record[column] for column in (*synthetic.PII_COLUMNS, "application_id")]


REASONS = (prepare.HEADER_LOOKS_LIKE_DATA, prepare.KEYS_LOOK_LIKE_DATA, "columns do not match the dataset policy")


def leaked(values: list[str], rejected: pytest.ExceptionInfo[prepare.FileRejected]) -> list[tuple[str, str]]:
    """Values (or four characters of one) in the rejection's message or details; its reason is one of ours."""
    assert rejected.value.reason in REASONS
    texts = [str(rejected.value), repr(rejected.value), *document_texts(rejected.value.details)]
    return leaks(values, texts, known=REASONS)


@pytest.mark.parametrize("seed", range(20))
def test_a_csv_without_a_header_row_is_said_to_look_like_data_and_never_quoted(seed: int) -> None:
    # Given a CSV whose header row is missing: its first data row (name, card, e-mail, phone…) is the header
    records = list(synthetic.rows(5, seed=100 + seed))
    headless = synthetic.to_csv(records).split("\n", 1)[1]
    # When it is prepared
    with pytest.raises(prepare.FileRejected) as rejected:
        run_stream(headless)
    # Then the reason says the header looks like data, with counts and positions only
    assert rejected.value.reason == prepare.HEADER_LOOKS_LIKE_DATA
    details = rejected.value.details
    assert (details["columns_found"], details["unexpected_columns"]) == (20, 20)
    assert details["missing"] == list(policy()["columns"])  # type: ignore[call-overload]
    email, phone, card = (synthetic.COLUMNS.index(c) + 1 for c in ("email", "phone", "card_number"))
    assert {email, phone, card} <= set(details["data_shaped_positions"])
    # And no value of that row, nor any four characters of one, is in the message or the details
    assert leaked(pii_of(records[0]), rejected) == []


def pii_headers() -> list[str]:
    record = next(synthetic.rows(1, seed=77))
    return [record["full_name"], record["card_number"], record["email"], record["phone"]]


@pytest.mark.parametrize("value", pii_headers(), ids=["name", "card", "email", "phone"])
def test_an_extra_csv_column_named_by_a_value_is_never_quoted(value: str) -> None:
    # Given a CSV with the declared header and one more column whose name is a person's data
    records = list(synthetic.rows(3, seed=5))
    lines = synthetic.to_csv(records).splitlines()
    header = lines[0] + "," + prepare_csv_cell(value)
    # When it is prepared
    with pytest.raises(prepare.FileRejected) as rejected:
        run_stream("\n".join([header] + [line + ",x" for line in lines[1:]]) + "\n")
    # Then the extra column is located (position 21), a data-shaped one is said to be, and nothing is quoted
    details = rejected.value.details
    assert (details["unexpected_columns"], details["unexpected_positions"]) == (1, [21])
    if prepare.detect_pii(value):
        assert rejected.value.reason == prepare.HEADER_LOOKS_LIKE_DATA
        assert details["data_shaped_positions"] == [21]
    else:  # a name: nothing tells it from a column name, so it is only located
        assert rejected.value.reason == "columns do not match the dataset policy"
    assert leaked([value], rejected) == []


@pytest.mark.parametrize("value", pii_headers(), ids=["name", "card", "email", "phone"])
def test_a_jsonl_record_with_a_value_as_a_key_is_never_quoted(value: str) -> None:
    # Given JSON Lines whose third record carries one more key, and that key is a person's data
    records: list[dict[str, object]] = [dict(r) for r in synthetic.rows(3, seed=6)]
    records[2][value] = "1"
    text = "".join(json.dumps(r) + "\n" for r in records)
    # When it is prepared
    with pytest.raises(prepare.FileRejected) as rejected:
        run_stream(text, "jsonl")
    # Then the record's line and the key's position are reported, never the key
    details = rejected.value.details
    assert (details["line"], details["unexpected_columns"], details["unexpected_positions"]) == (3, 1, [21])
    assert rejected.value.reason == (
        prepare.KEYS_LOOK_LIKE_DATA if prepare.detect_pii(value) else "columns do not match the dataset policy"
    )
    assert leaked([value], rejected) == []


def prepare_csv_cell(value: str) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow([value])
    return buffer.getvalue()


def test_a_field_past_the_csv_limit_quarantines_the_file_instead_of_failing_the_run() -> None:
    # Given a CSV with one field larger than the csv module accepts
    records = list(synthetic.rows(3))
    records[1]["notes"] = "x" * (csv.field_size_limit() + 1)
    # Then the file is rejected, not the run
    with pytest.raises(prepare.FileRejected) as rejected:
        run_stream(synthetic.to_csv(records))
    assert rejected.value.reason == "file is not valid CSV"


def test_an_unpaired_surrogate_in_json_lines_quarantines_the_file_instead_of_failing_the_run() -> None:
    # Given a JSON Lines record whose note escapes half a surrogate pair (valid JSON, not valid Unicode)
    record = dict(next(synthetic.rows(1)))
    line = (
        json.dumps(record)
        .replace('"notes": ""', '"notes": "x\\ud800"')
        .replace(f'"notes": "{record["notes"]}"', '"notes": "x\\ud800"')
    )
    assert "\\ud800" in line
    # Then the file is rejected with the line, as the prepared part could not be written
    with pytest.raises(prepare.FileRejected) as rejected:
        run_stream(line + "\n", "jsonl")
    assert (rejected.value.reason, rejected.value.details) == (
        "a value is not valid Unicode (an unpaired surrogate escape)",
        {"line": 1},
    )


def test_the_script_is_valid_python_3_9_and_needs_only_boto3() -> None:
    """Glue's Python shell runs 3.9: no newer syntax, no closedloop imports."""
    import ast
    import sys
    from pathlib import Path

    source = Path(prepare.__file__).read_text(encoding="utf-8")
    tree = ast.parse(source, feature_version=(3, 9))
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported - set(sys.stdlib_module_names) == {"boto3"}
    assert "from __future__ import annotations" in source
