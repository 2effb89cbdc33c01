"""What the preparation script does with undeclared PII (the policy's choice), and how it checks
kept numeric, label and categorical columns (no AWS)."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from closedloop.dataprep.policy import load_policy
from closedloop.prep import prepare
from closedloop_ops import synthetic

KEY = b"k" * 48
PHONE, CARD, EMAIL = "+49 30 901820", "4111 1111 1111 1111", "someone.else@example.org"


def policy(**changes: Any) -> dict[str, Any]:
    document = load_policy("loans").model_dump(mode="json")
    document.update(changes)
    return document


def records(n: int = 20, seed: int = 31) -> list[dict[str, object]]:
    return list(synthetic.rows(n, seed=seed))


def run_stream(rows: list[dict[str, object]], document: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
    out, withheld = io.StringIO(), io.StringIO()
    report = prepare.prepare_stream(io.BytesIO(synthetic.to_csv(rows).encode()), "csv", document, KEY, out, withheld)
    return report, out.getvalue(), withheld.getvalue()


def test_by_default_undeclared_pii_quarantines_the_whole_file() -> None:
    # Given a loans file whose notes hold one phone number (the loans policy keeps the default)
    rows = records()
    rows[4]["notes"] = f"call {PHONE} after six"
    assert load_policy("loans").undeclared_pii == "quarantine_file"
    # When it is prepared, Then the file is rejected with counts, the action recorded
    with pytest.raises(prepare.FileRejected) as rejected:
        run_stream(rows, policy())
    assert rejected.value.reason == "undeclared PII found"
    report = rejected.value.details["report"]
    assert report["undeclared"] == {"notes": {"phone": 1}}
    assert report["undeclared_pii"]["action"] == "quarantine_file"


def test_quarantine_rows_passes_the_clean_rows_and_withholds_the_others_whole() -> None:
    # Given a file of 20 rows, two of which hold undeclared PII in their notes
    rows = records()
    rows[4]["notes"] = f"call {PHONE} after six"
    rows[9]["notes"] = f"mail {EMAIL}"
    # When it is prepared under `quarantine_rows`
    report, out, withheld = run_stream(rows, policy(undeclared_pii="quarantine_rows"))
    # Then the 18 clean rows are prepared and the two others withheld, raw and with a header
    assert report["rows"] == 18
    assert len(out.splitlines()) == 18
    withheld_rows = list(csv.reader(io.StringIO(withheld)))
    assert withheld_rows[0] == list(load_policy("loans").columns)
    assert [r[0] for r in withheld_rows[1:]] == [rows[4]["application_id"], rows[9]["application_id"]]
    assert PHONE not in out and EMAIL not in out and str(rows[4]["full_name"]) not in out
    # And the report counts what was found and done, never a value
    assert report["undeclared"] == {"notes": {"email": 1, "phone": 1}}
    assert report["undeclared_pii"] == {
        "action": "quarantine_rows",
        "rows_with_pii": 2,
        "quarantined_rows": 2,
        "redacted_values": 0,
    }
    assert PHONE not in str(report) and EMAIL not in str(report)
    # And the run is still not clean: the source sends personal data its policy does not declare
    assert prepare.pii_verdict([{**report, "status": "prepared"}]) == {"undeclared_pii_files": 1, "clean": False}


def test_a_file_whose_every_row_holds_pii_is_quarantined_under_quarantine_rows() -> None:
    rows = records(3)
    for row in rows:
        row["notes"] = f"call {PHONE}"
    with pytest.raises(prepare.FileRejected) as rejected:
        run_stream(rows, policy(undeclared_pii="quarantine_rows"))
    assert rejected.value.reason == "every row held undeclared PII"


def test_redact_replaces_text_values_and_withholds_rows_it_cannot_redact() -> None:
    # Given a note with a phone number, and a card number in a numeric column of another row
    rows = records()
    rows[4]["notes"] = f"call {PHONE} after six"
    rows[7]["income"] = CARD.replace(" ", "")
    # When the file is prepared under `redact`
    report, out, withheld = run_stream(rows, policy(undeclared_pii="redact"))
    # Then the note is kept with the number replaced by its kind
    assert "call [phone] after six" in out
    assert PHONE not in out and CARD.replace(" ", "") not in out
    # And the row with the card in a numeric column (which a placeholder would break) is withheld
    assert report["rows"] == 19
    assert CARD.replace(" ", "") in withheld
    assert report["undeclared"] == {"notes": {"phone": 1}, "income": {"payment_card": 1}}
    assert report["undeclared_pii"] == {
        "action": "redact",
        "rows_with_pii": 2,
        "quarantined_rows": 1,
        "redacted_values": 1,
    }


@pytest.mark.parametrize(
    ("column", "value", "kind"),
    [
        ("income", "4111111111111111", "payment_card"),
        ("existing_debt", "+4915112345678", "phone"),
        ("approved", "someone.else@example.org", "email"),
        ("group", "+33 2 61 92 75 88", "phone"),
    ],
)
def test_numeric_label_and_categorical_columns_are_scanned(column: str, value: str, kind: str) -> None:
    # Given a value that is PII in a kept numeric, label or categorical column
    rows = records()
    rows[2][column] = value
    # When the file is prepared, Then it is found and counted in that column
    with pytest.raises(prepare.FileRejected) as rejected:
        run_stream(rows, policy())
    assert rejected.value.details["report"]["undeclared"] == {column: {kind: 1}}


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("age", "17", "value is below the declared minimum"),
        ("age", "121", "value is above the declared maximum"),
        ("age", "30.5", "value has more decimals than declared"),
        ("loan_term_months", "abc", "value is not a number"),
        ("approved", "2", "value is not one of the declared classes"),
        ("group", "C", "value is not one of the declared classes"),
    ],
)
def test_values_outside_their_declared_type_range_precision_or_classes_reject_the_file(
    column: str, value: str, reason: str
) -> None:
    rows = records()
    rows[5][column] = value
    with pytest.raises(prepare.FileRejected) as rejected:
        run_stream(rows, policy())
    assert rejected.value.reason == reason
    assert (rejected.value.details["line"], rejected.value.details["column"]) == (7, column)
    assert value not in str(rejected.value.details)


def test_values_inside_their_declared_range_pass() -> None:
    rows = records()
    rows[5]["age"] = "30.0"
    rows[6]["loan_term_months"] = "1e2"
    report, _, _ = run_stream(rows, policy())
    assert report["rows"] == 20


def test_a_policy_with_an_unknown_pii_action_or_region_is_refused() -> None:
    from pydantic import ValidationError

    from closedloop.dataprep.policy import ColumnPolicy, DatasetPolicy

    document = load_policy("loans").model_dump(mode="json")
    with pytest.raises(ValidationError):
        DatasetPolicy.model_validate({**document, "undeclared_pii": "ignore"})
    with pytest.raises(ValidationError):
        DatasetPolicy.model_validate({**document, "regions": ["de"]})
    with pytest.raises(ValidationError, match="numeric columns only"):
        ColumnPolicy.model_validate({"type": "text", "minimum": 1})
    with pytest.raises(ValidationError, match="label and categorical"):
        ColumnPolicy.model_validate({"type": "numeric", "classes": ["a"]})
    assert DatasetPolicy.model_validate({**document, "regions": ["DE", "FR"]}).regions == ("DE", "FR")


def test_a_policy_without_unix_times_in_text_finds_a_bare_delhi_landline() -> None:
    # Given a loans file whose notes hold a landline written as ten bare digits from 1, no keyword
    rows = records()
    rows[4]["notes"] = "branch desk 1123456789 after six"
    assert prepare.detect_pii("1123456789") == []  # the default reading: it may be a Unix time
    # When the dataset declares that its text holds no Unix times (and quarantines rows)
    document = policy(undeclared_pii="quarantine_rows", unix_times_in_text=False)
    report, out, _ = run_stream(rows, document)
    # Then the row is withheld as holding a phone, and the report says so in counts only
    assert report["undeclared"] == {"notes": {"phone": 1}}
    assert report["rows"] == 19 and "1123456789" not in out
    # And the run's lineage records the reading the dataset chose
    assert prepare._pii_handling(document)["unix_times_in_text"] is False
    assert prepare._pii_handling(policy())["unix_times_in_text"] is True
