"""The preparation script's PII handling, on the seeded synthetic dataset (no AWS)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from closedloop.dataprep.policy import load_policy
from closedloop.prep import prepare
from closedloop_ops import synthetic

KEY = b"k" * 48


def policy() -> dict[str, object]:
    return load_policy("loans").model_dump(mode="json")


def run_stream(text: str | bytes, file_format: str = "csv") -> tuple[dict[str, object], str]:
    raw = io.BytesIO(text.encode("utf-8") if isinstance(text, str) else text)
    out = io.StringIO()
    report = prepare.prepare_stream(raw, file_format, policy(), KEY, out)
    return report, out.getvalue()


@pytest.mark.parametrize(
    ("digits", "valid"),
    [("4111111111111111", True), ("4111111111111112", False), ("5555555555554444", True), ("123", False)],
)
def test_luhn(digits: str, valid: bool) -> None:
    assert prepare.luhn_valid(digits) is valid


def test_iban_check() -> None:
    assert prepare.iban_valid("GB82 WEST 1234 5698 7654 32")
    assert not prepare.iban_valid("GB82 WEST 1234 5698 7654 33")


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("write to jane.doe@example.org please", ["email"]),
        ("card 4111 1111 1111 1111 on file", ["payment_card"]),
        ("ref 4111111111111112 is not a card", []),
        ("order 1234567890123 shipped", []),
        ("IBAN DE89370400440532013000", ["iban", "bank_account"]),
        ("account no. 12345678", ["bank_account"]),
        ("ssn 123-45-6789", ["us_ssn"]),
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

    rng = random.Random(3)
    runs = []
    while len(runs) < 200:
        digits = "".join(str(rng.randrange(10)) for _ in range(16))
        if not prepare.luhn_valid(digits):
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


def test_an_extra_column_is_named() -> None:
    text = synthetic.to_csv(list(synthetic.rows(3)))
    lines = text.splitlines()
    lines = [lines[0] + ",ssn"] + [line + ",x" for line in lines[1:]]
    with pytest.raises(prepare.FileRejected) as rejected:
        run_stream("\n".join(lines) + "\n")
    assert rejected.value.details["unexpected"] == ["ssn"]


def test_a_short_row_and_a_non_number_are_rejected() -> None:
    records = list(synthetic.rows(3))
    text = synthetic.to_csv(records) + "APP-9,only,two\n"
    with pytest.raises(prepare.FileRejected, match="wrong number of fields"):
        run_stream(text)
    records[1]["income"] = "lots"
    with pytest.raises(prepare.FileRejected, match="not a number") as rejected:
        run_stream(synthetic.to_csv(records))
    assert rejected.value.details == {"line": 3, "column": "income"}


def test_jsonl_with_nested_values_or_bad_lines_is_rejected() -> None:
    with pytest.raises(prepare.FileRejected, match="not valid JSON"):
        run_stream("{not json}\n", "jsonl")
    record: dict[str, object] = dict(next(synthetic.rows(1)))
    record["notes"] = {"a": 1}
    nested = json.dumps(record) + "\n"
    with pytest.raises(prepare.FileRejected, match="nested"):
        run_stream(nested, "jsonl")


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
