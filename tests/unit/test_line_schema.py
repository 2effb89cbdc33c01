"""The published JSON Schema of a model line: current, valid, and as strict as LineSpec where it can be."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from closedloop.dataprep.policy import ColumnPolicy
from closedloop.errors import DatasetPolicyError
from closedloop.line import (
    DRIFT_ALARMS,
    ENDPOINT_ALARMS,
    ApprovalOverrides,
    LineResources,
    LineSpec,
    RetrainingOverrides,
    parse_line,
)
from closedloop_ops.lines import LINES_DIR, SCHEMA_FILE, TEMPLATE_DEFAULTS, schema_text
from closedloop_ops.local.template import read_yaml

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / LINES_DIR).glob("*.json"))


def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((ROOT / SCHEMA_FILE).read_text(encoding="utf-8")))


def loans() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((ROOT / LINES_DIR / "loans.json").read_text(encoding="utf-8"))
    return document


def test_the_checked_in_schema_is_what_linespec_generates() -> None:
    # Given the schema generated from LineSpec now
    generated = schema_text()
    # Then the checked-in copy is byte for byte the same
    checked_in = (ROOT / SCHEMA_FILE).read_text(encoding="utf-8")
    assert checked_in == generated, (
        f"{SCHEMA_FILE} is not what LineSpec generates: regenerate it with "
        f"`.venv/bin/closedloop line schema > {SCHEMA_FILE}` and commit it"
    )


def test_it_is_a_draft_2020_12_schema_that_says_where_the_full_rules_are() -> None:
    schema = json.loads((ROOT / SCHEMA_FILE).read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] and schema["title"]
    assert "`closedloop line validate FILE` applies the full rules" in schema["description"]


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_line_passes_the_schema(path: Path) -> None:
    assert {"loans.json", "churn.json"} <= {p.name for p in SHIPPED}
    document = json.loads(path.read_text(encoding="utf-8"))
    assert [error.message for error in validator().iter_errors(document)] == []
    assert parse_line(path.read_text(encoding="utf-8"), source=path.name).name == path.stem


def _broken(change: str) -> dict[str, Any]:
    document = loans()
    if change == "unknown field":
        document["retrain_every"] = "weekly"
    elif change == "unknown column field":
        document["columns"]["age"]["unit"] = "years"
    elif change == "upper-case name":
        document["dataset"] = "Loans"
    elif change == "underscore in name":
        document["dataset"] = "loans_v2"  # a dataset's slug allows it; a line's name (AWS names) does not
    elif change == "name too long":
        document["dataset"] = "l" * 31
    elif change == "version not a number":
        document["version"] = "one"
    elif change == "columns not an object":
        document["columns"] = ["age", "income"]
    elif change == "formats not a list":
        document["formats"] = {"csv": True}
    elif change == "threshold above one":
        document["approval"] = {"min_auc": 1.5}
    elif change == "unknown action":
        document["columns"]["email"]["action"] = "delete"
    elif change == "column name not an identifier":
        document["columns"]["home ownership"] = document["columns"].pop("home_ownership")
    elif change == "region not a code":
        document["regions"] = ["de"]
    return document


BROKEN = {
    "unknown field": "retrain_every",
    "unknown column field": "columns.age.unit",
    "upper-case name": "dataset",
    "underscore in name": "line's name",
    "name too long": "dataset",
    "version not a number": "version",
    "columns not an object": "columns",
    "formats not a list": "formats",
    "threshold above one": "approval.min_auc",
    "unknown action": "columns.email.action",
    "column name not an identifier": "home ownership",
    "region not a code": "region",
}


@pytest.mark.parametrize("change", sorted(BROKEN))
def test_the_schema_rejects_what_linespec_rejects(change: str) -> None:
    # Given a shipped line broken in one way
    document = _broken(change)
    # Then the schema rejects it
    assert list(validator().iter_errors(document)), change
    # And so does LineSpec, naming the field
    with pytest.raises(DatasetPolicyError) as raised:
        parse_line(json.dumps(document), source="loans.json")
    assert BROKEN[change] in raised.value.message


def test_rules_across_fields_are_left_to_line_validate() -> None:
    # Given a line whose label is a dropped column (a rule across two fields)
    document = copy.deepcopy(loans())
    document["columns"]["approved"]["action"] = "drop"
    # Then the schema cannot see it, and LineSpec refuses it
    assert list(validator().iter_errors(document)) == []
    with pytest.raises(DatasetPolicyError, match="label 'approved' must be a kept column"):
        parse_line(json.dumps(document), source="loans.json")


def test_the_template_defaults_the_command_line_assumes_are_the_template_s() -> None:
    parameters = read_yaml(ROOT / "template.yaml")["Parameters"]
    assert {name: str(parameters[name]["Default"]) for name in TEMPLATE_DEFAULTS} == TEMPLATE_DEFAULTS


def test_the_onboarding_guide_names_a_line_s_resources_as_the_code_does() -> None:
    # Given the names LineResources derives, written with placeholders
    owned = LineResources.of("<prefix>", "raw/", "<line>")
    guide = (ROOT / "docs" / "onboarding.md").read_text(encoding="utf-8")
    # Then the guide names every one of them, and every alarm kind the code knows
    for name in (owned.model_package_group, owned.drift_schedule, owned.raw_prefix):
        assert f"`{name}`" in guide, name
    for kind in (*DRIFT_ALARMS, *ENDPOINT_ALARMS):
        assert kind.split("-", 1)[1] in guide, kind
    assert "`<prefix>-<line>-drift-{features,predictions,bias,attributions}`" in guide
    kinds = ",".join(kind.split("-", 1)[1] for kind in ENDPOINT_ALARMS)
    assert f"`<prefix>-<line>-endpoint-{{{kinds}}}`" in guide


def test_the_onboarding_guide_s_example_is_a_valid_line_that_uses_every_field() -> None:
    # Given the example line of the guide
    guide = (ROOT / "docs" / "onboarding.md").read_text(encoding="utf-8")
    (example,) = re.findall(r"```json\n(.*?)```", guide, re.S)
    # Then the stack accepts it, and so does the schema
    spec = parse_line(example, source="claims.json")
    assert [error.message for error in validator().iter_errors(json.loads(example))] == []
    # And it sets every field of a line, its columns use every action and type, and the guide explains each
    document = json.loads(example)
    assert set(document) == set(LineSpec.model_fields) - {"schema_url"}
    assert set(document["approval"]) == set(ApprovalOverrides.model_fields)
    assert set(document["retraining"]) == set(RetrainingOverrides.model_fields)
    columns = spec.columns.values()
    assert {c.action for c in columns} == {"keep", "drop", "pseudonymise", "mask"}
    assert {c.type for c in columns} == {"numeric", "categorical", "text", "identifier", "label"}
    used = {key for column in document["columns"].values() for key in column}
    assert used == set(ColumnPolicy.model_fields)
    explained = [
        *(set(LineSpec.model_fields) - {"schema_url", "approval", "retraining"}),
        *ColumnPolicy.model_fields,
        *(f"approval.{name}" for name in ApprovalOverrides.model_fields),
        *(f"retraining.{name}" for name in RetrainingOverrides.model_fields),
    ]
    for name in explained:
        assert f"**`{name}`**" in guide or f"**`{name.rsplit('.', 1)[-1]}`**" in guide, name
    for mode in ("quarantine_file", "quarantine_rows", "redact"):
        assert f'`"{mode}"`' in guide, mode
