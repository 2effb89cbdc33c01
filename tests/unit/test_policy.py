from __future__ import annotations

import json

import pytest

from closedloop.dataprep.policy import known_datasets, load_policy, parse_policy
from closedloop.errors import DatasetPolicyError, UnknownDatasetError
from closedloop_ops import synthetic


def test_every_shipped_policy_is_valid() -> None:
    assert "loans" in known_datasets()
    for dataset in known_datasets():
        assert load_policy(dataset).dataset == dataset


def test_the_loans_policy_covers_the_synthetic_columns_and_strips_pii() -> None:
    policy = load_policy("loans")
    assert list(policy.columns) == synthetic.COLUMNS
    for column in synthetic.PII_COLUMNS:
        assert policy.columns[column].action != "keep", column
    assert "customer_id" in policy.output_columns()
    assert "full_name" not in policy.output_columns()


def test_an_unknown_dataset_is_a_clear_error() -> None:
    with pytest.raises(UnknownDatasetError, match="payroll"):
        load_policy("payroll")


BASE = {"dataset": "d", "version": 1, "columns": {"a": {"action": "keep"}, "b": {"action": "drop"}}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"columns": {"a": {"action": "drop"}}}, "every column is dropped"),
        ({"columns": {"a": {"action": "pseudonymise"}}}, "needs 'rename'"),
        ({"columns": {"a": {"action": "keep", "rename": "x"}}}, "only pseudonymised"),
        ({"label": "b"}, "label 'b' must be a kept column"),
        ({"protected_attribute": "zz"}, "protected_attribute"),
        ({"columns": {"a": {"action": "shred"}}}, "columns.a.action"),
        ({"columns": {"a b": {"action": "keep"}}}, "safe identifier"),
        ({"version": 0}, "version"),
        ({"surprise": True}, "surprise"),
        (
            {"columns": {"a": {"action": "keep"}, "x": {"action": "pseudonymise", "rename": "a"}}},
            "same output name",
        ),
    ],
)
def test_invalid_policies_are_rejected_with_the_reason(change: dict[str, object], message: str) -> None:
    document = {**BASE, **change}
    with pytest.raises(DatasetPolicyError, match=message):
        parse_policy(json.dumps(document), source="test.json")


def test_policy_hash_changes_with_content() -> None:
    first = parse_policy(json.dumps(BASE), source="a")
    second = parse_policy(json.dumps({**BASE, "version": 2}), source="b")
    assert first.sha256() != second.sha256()
