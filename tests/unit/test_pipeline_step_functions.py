"""The step scripts' pure parts: column roles, the held-out split, binning, metadata safety, serving."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from support.steps import load_step

common = load_step("common")
evaluate = load_step("evaluate")
inference = load_step("inference")

MANIFEST = {
    "dataset": "loans",
    "run_id": "r1",
    "output": {
        "columns": ["application_id", "customer_id", "card_number", "age", "purpose", "notes", "group", "approved"],
        "column_types": {
            "application_id": "identifier",
            "customer_id": "identifier",
            "card_number": "text",
            "age": "numeric",
            "purpose": "categorical",
            "notes": "text",
            "group": "categorical",
            "approved": "label",
        },
        "label": "approved",
        "protected_attribute": "group",
        "favourable_label": "1",
    },
}
HEADER = MANIFEST["output"]["columns"]  # type: ignore[index]


def test_features_are_the_typed_columns_except_label_and_protected_attribute() -> None:
    schema = common.schema_from_manifest(MANIFEST, HEADER)
    assert schema.feature_order == ["age", "purpose"]
    assert schema.feature_types == {"age": "numeric", "purpose": "categorical"}
    assert schema.excluded == {
        "application_id": "identifier",
        "customer_id": "identifier",
        "card_number": "text",
        "notes": "text",
        "group": "protected attribute",
    }
    assert (schema.label, schema.protected_attribute, schema.favourable_label) == ("approved", "group", "1")


def test_a_manifest_declaring_columns_the_data_lacks_is_refused() -> None:
    with pytest.raises(common.StepError, match="lacks declared columns"):
        common.schema_from_manifest(MANIFEST, [c for c in HEADER if c != "group"])


def test_the_split_is_a_function_of_the_key_so_every_step_recomputes_it() -> None:
    rows = [[f"APP-{i}", f"id-{i % 300}", "", "30", "car", "", "A", "1"] for i in range(3000)]
    first = common.holdout_mask(HEADER, rows, "customer_id", "salt", 0.25)
    again = common.holdout_mask(HEADER, list(reversed(rows)), "customer_id", "salt", 0.25)[::-1]
    assert (first == again).all()
    assert 0.18 < first.mean() < 0.32
    # one customer's rows are all on one side
    by_customer: dict[str, set[bool]] = {}
    for row, held in zip(rows, first, strict=True):
        by_customer.setdefault(row[1], set()).add(bool(held))
    assert all(len(sides) == 1 for sides in by_customer.values())


def test_the_split_key_is_the_coarsest_identifier_with_enough_groups() -> None:
    rows = [[f"APP-{i}", f"id-{i % 300}", "", "", "", "", "", ""] for i in range(1000)]
    assert common.choose_split_key(HEADER, rows, ["application_id", "customer_id"]) == "customer_id"
    few = [[f"APP-{i}", f"id-{i % 3}", "", "", "", "", "", ""] for i in range(1000)]
    assert common.choose_split_key(HEADER, few, ["application_id", "customer_id"]) == "application_id"
    assert common.choose_split_key(HEADER, few, []) == ""


def test_bin_proportions_follow_the_documented_rule() -> None:
    edges = [0.0, 1.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    values = np.array([-5.0, 0.5, 1.0, 1.5, 9.0, 50.0])
    # -5 and 0.5: no inner edge at or below → bin 0; 1.0 and 1.5: two → bin 2 (bin 1 is empty); 9, 50: bin 9
    assert common.bin_proportions(values, edges) == pytest.approx([2 / 6, 0, 2 / 6, 0, 0, 0, 0, 0, 0, 2 / 6])


def test_quantile_edges_and_samples_have_the_contract_shape() -> None:
    values = np.arange(5000, dtype=float)
    edges = common.quantile_edges(values)
    assert len(edges) == 11 and edges[0] == 0 and edges[-1] == 4999
    sample = common.sorted_sample(values, 1000, seed=7)
    assert len(sample) == 1000 and sample == sorted(sample)
    assert common.sorted_sample(values, 1000, seed=7) == sample


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "s3://closedloop-dev-data/prepared/loans/r1/manifest.json",
            "s3://closedloop-dev-data/prepared/loans/r1/manifest.json",
        ),
        ("Threshold Crossed: [0.35 (27/11/26)] > 0.2; see #ops", "Threshold Crossed: 0.35 27/11/26 0.2 see ops"),
        ("", "none"),
        ("é ü ß 漢字", "é ü ß 漢字"),
        ("x" * 400, "x" * 256),
    ],
)
def test_lineage_values_are_made_safe_for_the_registry(value: str, expected: str) -> None:
    cleaned = evaluate.metadata_value(value)
    assert cleaned == expected
    assert 1 <= len(cleaned) <= 256
    assert re.fullmatch(r"[\w .:/=+\-@]+", cleaned)


def test_the_lineage_document_carries_both_code_versions_and_the_dataset() -> None:
    document = evaluate.lineage_document(
        {"code_version": "abc", "dataset": "loans", "lineage": {"trigger": "upload", "prep_code_version": "def"}},
        ["trigger=alarm", "trigger_reason=drift (PSI 0.31)", "prep_run_id="],
    )
    assert document == {
        "code_version": "train=abc prep=def",
        "dataset": "loans",
        "prep_run_id": "none",
        "trigger": "alarm",
        "trigger_reason": "drift PSI 0.31",
    }


def test_request_rows_become_model_input_and_bad_numbers_are_named_not_echoed() -> None:
    types = {"age": "numeric", "purpose": "categorical"}
    matrix = inference.to_matrix([["34", "car"], ["", "rent"]], ["age", "purpose"], types)
    assert matrix[0, 0] == 34.0 and np.isnan(matrix[1, 0]) and matrix[1, 1] == "rent"
    with pytest.raises(ValueError, match="row 1: column 'age' is not a number") as raised:
        inference.to_matrix([["thirty-four", "car"]], ["age", "purpose"], types)
    assert "thirty-four" not in str(raised.value)


@pytest.mark.parametrize(
    ("body", "content_type", "problem"),
    [
        ("34,car\n", "application/json", "unsupported content type"),
        ("", "text/csv", "no rows"),
        ("\n".join(["1,a"] * 10_001), "text/csv", "at most"),
    ],
)
def test_input_fn_refuses_what_the_contract_does_not_allow(body: str, content_type: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        inference.input_fn(body, content_type)


def test_input_and_output_follow_the_inference_contract() -> None:
    assert inference.input_fn(b"34,car,B\n29,rent,A", "text/csv; charset=utf-8") == [
        ["34", "car", "B"],
        ["29", "rent", "A"],
    ]
    body, content_type = inference.output_fn(np.array([0.83, 0.12]), "text/csv")
    assert (body, content_type) == ("0.830000\n0.120000", "text/csv")
    with pytest.raises(ValueError, match="unsupported accept"):
        inference.output_fn(np.array([0.5]), "application/json")


def test_the_training_data_may_come_in_parts_each_with_the_header(tmp_path: Path) -> None:
    # Given a channel of the Spark engine's parts (one per raw file), in name order
    (tmp_path / "part-00001.csv").write_text("id,label\nb,0\nc,1\n")
    (tmp_path / "part-00000.csv").write_text("id,label\na,1\n")
    # When the table is read, then it is every part's rows under the one header, in part order
    assert common.read_table(str(tmp_path)) == (["id", "label"], [["a", "1"], ["b", "0"], ["c", "1"]])
    # and a part with another header is refused, naming the part, never a value
    (tmp_path / "part-00002.csv").write_text("id,target\nd,1\n")
    with pytest.raises(common.StepError, match="part 3 of the prepared data has another header than part 1"):
        common.read_table(str(tmp_path))
